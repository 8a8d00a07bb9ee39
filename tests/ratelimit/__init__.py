"""Rate limits and quotas: the state store, the configuration, the stage, the gateway."""
