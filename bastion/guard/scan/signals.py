"""The phrasing signals: small patterns that each say one thing about a span of text.

A signal alone decides nothing ("must", "important", an API key mentioned): rules in
`phrasing` combine them by target and intent. The groups follow security-requirements §4.5:
model-directed obligation, concealment from the user, sensitive targets, egress and
side channels, references to tools, authority or urgency spoofing; plus the shapes seen in
the wild (commands to run, parameter rewriting, tool redirection, output dictation,
preference manipulation, task hijacking, role overrides).

Patterns run on the normalised (lower-case, de-obfuscated) text; a literal space in a
pattern matches any run of white space. A few European languages are covered for the
groups attackers translate first (obligation, concealment, side channels).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Signal:
    """One match of one signal group."""

    group: str
    start: int
    end: int
    text: str


def _rx(*parts: str, fast_start: bool = False) -> re.Pattern[str]:
    """One pattern from alternatives; a space matches any white space. With `fast_start`,
    the leading `\\b` of each alternative is dropped so the engine can skip ahead on the
    first characters (much faster on long text); `find_signals` checks the boundary."""
    if fast_start:
        parts = tuple(_LEADING_B.sub(r"\1", p) for p in parts)
    joined = "|".join(f"(?:{p})" for p in parts)
    return re.compile(joined.replace(" ?", r"\s*").replace(" ", r"\s+"))


_LEADING_B = re.compile(r"(^|\|)\\b")


_ACT = (r"(?:call|use|invoke|run|execute|read|send|include|pass|change|modify|set|replace"
        r"|redirect|update|add|append|access|halt|ignore|provide|report|inform|state|delete"
        r"|remove|clean|fetch|forward|upload|verify|check|log|make|perform|open|copy|write"
        r"|post|submit|attach|insert|display|present|tell|notify|approve|grant|obtain"
        r"|retrieve|collect|share|transmit|query|request|follow|first|also|then|now|always"
        r"|immediately|automatically)")
_USER = (r"(?:the )?(?:user|users|human|operator|customer|requester|end[- ]user|usuario"
         r"|utilisateur|nutzer|benutzer|usu[aá]rio|utente)s?")
_SECRET_VERB = (r"(?:tell|inform|notify|alert|warn|let|ask|show|report|explain|decir|informar"
                r"|avisar)")
_MENTION = r"(?:mention|reveal|disclose|say|acknowledge|bring up|explain|report|show)"
_NEG = (r"(?:do not|don't|dont|never|must not|mustn't|should not|shouldn't|shall not"
        r"|no need to|not to|avoid|refrain from)")
#: An identifier with separators, gateway-prefixed names (`edr__isolate_host`) included.
_IDENT = r"[a-z][a-z0-9]*(?:(?:__|[_-])[a-z0-9]+)+"
_QUOTED = (r"`[^`\s]{2,64}`|'[^'\s]{2,64}'|\"[^\"\s]{2,64}\"|\u2018[^\u2019\s]{2,64}\u2019"
           r"|\u201c[^\u201d\s]{2,64}\u201d")

GROUPS: dict[str, re.Pattern[str]] = {
    # (a) obligation aimed at the model
    "oblig": _rx(
        r"\byou (?:must|shall|need to|have to|are required to|are expected to"
        r"|are instructed to|will need to|are obligated to|should (?:always|first|then|also|now"
        r"|immediately))\b",
        rf"\b(?:must|shall) (?:(?:always|first|also|then|now|immediately|automatically"
        rf"|still|only) )*{_ACT}\b",
        r"\b(?:it is|it's|this is) (?:critical|crucial|essential|vital|imperative|mandatory"
        r"|required|necessary) (?:to|that)\b",
        r"\b(?:is|are) (?:mandatory|compulsory|obligatory)\b",
        r"\bthe (?:system|assistant|agent|model|ai|llm) (?:must|shall|requires|needs to"
        r"|will need to|has to|is required to)\b",
        r"\bdo the following\b",
        r"\b(?:debes|tienes que|deber[aá]s|vous devez|tu dois|il faut|du musst|sie m[uü]ssen"
        r"|voc[eê] deve|devi|dovete)\b",
    ),
    # (a') softer asks: count only next to a stronger signal
    "ask": _rx(
        r"\bplease (?:\w+ )?(?:run|execute|call|use|send|read|include|pass|change|forward|append"
        r"|attach|insert|put|paste"
        r"|upload|ignore|do|access|open|visit|fetch|click|go|add|delete|remove|copy|reply"
        r"|respond|provide|share|make|perform|follow|update|set)\b",
        r"\b(?:make sure|be sure|remember|don't forget) (?:to|that you|you)\b",
        r"\b(?:always|first|immediately|then) (?:call|use|invoke|run|execute|read|send"
        r"|include|pass|change|modify|set|replace|redirect|append|forward|upload|access"
        r"|fetch|delete|remove|approve)\b",
        r"\byou should\b",
    ),
    # changing a start-up or configuration file (persistence)
    "tamper": _rx(
        r"\b(?:add|append|write|modify|update|edit|change|insert|overwrite|replace)\w*\b"
        r"(?= [^\n]{0,80}?(?:\.bashrc|\.zshrc|\.profile|\.bash_profile|crontab|authorized_keys"
        r"|/etc/|\.gitconfig|\.npmrc|mcp\.json|\.cursor/))",
        fast_start=True,
    ),
    # reading a sensitive target (the target must follow the verb closely)
    "harvest": _rx(
        r"\b(?:read|cat|open|load|dump|print|extract|collect|gather|harvest|grab|obtain"
        r"|retrieve|lee|leer|lire|lis|lies|copy|value of|contents? of)\b(?= [^\n]{0,60}?"
        r"(?:~/|/etc/|\.ssh|\.aws|_api_key|_secret|_token|_password"
        r"|\.env\b|id_(?:rsa|ed25519|ecdsa)|mcp\.json|\.cursor|credentials|\.bashrc|\.netrc"
        r"|\.npmrc|\.pypirc|\.git-credentials|\.docker|\.kube|kubeconfig|wallet|keychain|passwd"
        r"|api[ _-]?keys?|secret|token|password|conversation|chat|history|messages|transcript"
        r"|system prompt|private key|seed phrase|\.pem\b))",
        fast_start=True,
    ),
    "precond": _rx(
        r"\b(?:before|after|prior to|once) (?:you |each |every |any |the )?(?:can )?(?:use|using"
        r"|call|calling"
        r"|invoke|invoking|run|running|execut\w*|process\w*|retriev\w*|access\w*|answer\w*"
        r"|respond\w*|summariz\w*|return\w*|attempt\w*|proceed\w*|get|getting|complet\w*"
        r"|perform\w*|finish\w*|analyz\w*|solv\w*|search\w*|fetch\w*|query\w*|read\w*"
        r"|list\w*|open\w*|showing|presenting|providing)\b",
        r"\b(?:every time|each time|whenever) (?:this tool|you|it) (?:runs|is (?:used|called"
        r"|run)|use|call)",
        r"\b(?:antes de (?:usar|utilizar|llamar|ejecutar|chamar|responder|contestar)"
        r"|avant d'(?:utiliser|r[ée]pondre"
        r"|appeler|ex[ée]cuter)|bevor (?:du|sie)|prima di (?:usare|chiamare))\b",
    ),
    # (b) concealment from the user
    "secrecy_user": _rx(
        rf"\b{_NEG} (?:ever )?{_SECRET_VERB}(?:ing)? {_USER}\b",
        rf"\b{_NEG} (?:ever )?let {_USER} know\b",
        rf"\bwithout (?:ever )?(?:tell|inform|notify|alert|ask|let|warn|show)\w* {_USER}\b",
        rf"\b{_USER} (?:must not|should not|shouldn't|does not need to|doesn't need to"
        rf"|need not|must never|should never|is not to|cannot|can't) (?:know|be told"
        rf"|be informed|see|notice|find out|learn|be aware)\b",
        rf"\b(?:hide|conceal) (?:\w+ ){{0,3}}from {_USER}\b",
        rf"\b(?:invisible|hidden|not visible|not shown) to {_USER}\b",
        rf"\b{_USER} (?:is|are) (?:not aware|unaware)\b|\bwithout {_USER}'?s? knowledge\b",
        rf"\b{_NEG} {_MENTION}\w* (?:this |that |it |anything )?(?:to|with) {_USER}\b",
        r"\bno (?:se lo|le) (?:digas|menciones|informes|comentes)\b|\bsin (?:dec[ií]rselo"
        r"|decirle|informar|avisar)\b|\bne (?:le |lui )?(?:dis|dites|mentionne\w*|informe\w*)"
        r" (?:pas|rien)\b|\bsans (?:le dire|informer|pr[ée]venir)\b|\bn[ãa]o (?:diga|conte"
        r"|mencione|informe)\b|\bnon (?:dire|dirlo|menzionare|informare)\b"
        r"|\b(?:sag|sage|erw[äa]hne|informiere)\w* (?:es |das )?(?:dem|den) (?:nutzer|benutzer)"
        r" nicht\b",
    ),
    "secrecy": _rx(
        rf"\b{_NEG} (?:ever )?{_MENTION}\w* (?:this|that|it|the change|these changes"
        rf"|anything|any of this|the (?:\w+ )?(?:step|change|instruction|redirect\w*"
        rf"|modification))\b",
        r"\b(?:silently|secretly|covertly|quietly|discreetly|stealthily|surreptitiously"
        r"|invisibly) (?:\w+ )?(?:add|send|call|run|execute|include|forward|upload|copy"
        r"|modify|change|switch|swap|set|alter|update|edit|route|reroute|substitute"
        r"|read|append|write|replace|redirect|use|pass|post|transmit|collect"
        r"|log|record|store|save|install|delete|remove|insert|attach|bcc|cc|approve"
        r"|exfiltrat\w*)\b",
        r"\bkeep (?:this|it|that) (?:secret|hidden|confidential|between us)\b",
        r"\bwithout (?:saying|mentioning|telling|disclosing|revealing|noting|explaining)"
        r" (?:so|it|this|that|anything|why)\b",
        r"\bwithout (?:asking|confirmation|approval|consent|the user'?s? (?:approval|consent"
        r"|knowledge))\b",
        r"\ben secreto\b|\ben silence\b|\bheimlich\b",
    ),
    # (c) sensitive targets
    "c_strong": _rx(
        r"~/\.[\w-]+|~/\.ssh(?!/[\w.-]*\.pub\b)|\.ssh/(?![\w.-]*\.pub\b)|\bssh (?:private )?keys?\b"
        r"|\bid[_ ](?:rsa|ed25519|ecdsa|dsa)\b(?!\.pub)"
        r"|authorized_keys|\.aws/|aws/credentials|/etc/(?:passwd|shadow|sudoers|hosts)"
        r"|\.(?:bashrc|bash_profile|zshrc|zprofile|profile|netrc|npmrc|pypirc|git-credentials"
        r"|gitconfig|pgpass)\b|\.docker/config|\.kube/config|kubeconfig|\.gnupg"
        r"|(?<![\w.])\.env\b|\bmcp\.json|claude_desktop_config|\.cursor/|credentials\.json"
        r"|secrets?\.(?:json|ya?ml|txt|env)|wallet\.dat|\bkeychain\b|application_default"
        r"|\bprivate[ _-]?keys?\b|\bseed phrase\b|\bmnemonic phrase\b",
        r"\b(?:conversation|chat|message|question|prompt|search|browsing) (?:history|log"
        r"|transcript|so far)\b"
        r"|\b(?:full|entire|whole|complete|previous|prior) (?:conversation|chat|dialog\w*)"
        r"|\bprevious messages\b|\bsystem (?:prompt|message|instructions)\b"
        r"|\b(?:the user'?s|your|their) (?:(?:last|previous|recent|earlier|other) )?(?:\w+ )?"
        r"(?:messages|prompts|questions)\b"
        r"|\byour (?:instructions|system prompt|initial prompt|hidden prompt|prompt|rules)\b"
        r"|\bdeveloper (?:message|prompt)\b|\bcontext window\b"
        r"|\b[a-z0-9]+_(?:api_key|secret|secret_key|token|password|passwd|access_key)\b"
        r"|\bhistorial (?:completo )?de (?:la )?conversaci[oó]n\b|\bhistorique (?:de la )?"
        r"conversation\b|\b(?:gespr[äa]chs|chat)verlauf\b",
        r"\bprivate (?:information|data|details)\b|\bpersonal (?:information|data)\b"
        r"|\b(?:output|results?|responses?|data) (?:of|from) (?:other|previous)"
        r" (?:tools?|servers?|calls?)\b",
        fast_start=True,
    ),
    "c_weak": _rx(
        r"\bapi[ _-]?keys?\b|\baccess[ _-]?(?:keys?|tokens?)\b|\bsecret[ _-]?keys?\b"
        r"|\b(?:auth\w*|bearer|refresh|session|oauth) tokens?\b|\bpasswords?\b|\bpassphrases?\b"
        r"|\bcredentials?\b|\bsecurity codes?\b|\b(?:2fa|mfa|otp|one[- ]time|verification)"
        r" (?:codes?|passwords?)\b|\bcredit card\b|\bcvv\b|\bsocial security\b"
        r"|\benvironment variables\b|\benv vars\b|\bsecrets\b|\bcookies?\b",
    ),
    # (d) egress and side channels
    "egress": _rx(
        r"\b(?:send|sends|sending|sent|upload\w*|forward\w*|transmit\w*|exfiltrat\w*"
        r"|leak\w*|beacon\w*|bcc|env[ií]a\w*|envoie\w*|sende\w*)\b",
        r"\b(?:post|e-?mail|submit|report|sync|copy|deliver|push|share)\w* (?:[\w']+ ){0,6}"
        r"(?:to|with) (?=\S*[@/.])",
        r"\bmake (?:a|an) (?:\w+ ){0,2}request to\b",
        r"\baccess (?:our|the|this|a|their) (?:\w+ ){0,4}(?:endpoint|url|server|site|service"
        r"|api|page|website)\b",
        r"\b(?:visit|navigate to|browse to|go to|load|ping|contact) (?:the )?(?:url |link |page"
        r" |website |site |endpoint )?(?=https?://)",
    ),
    # an internal or cloud-metadata address as a destination (SSRF through the model)
    "internal": _rx(
        r"\b169\.254\.\d{1,3}\.\d{1,3}\b|\b127\.\d{1,3}\.\d{1,3}\.\d{1,3}\b|\blocalhost\b"
        r"|\bmetadata\.google\.internal\b|\b10\.\d{1,3}\.\d{1,3}\.\d{1,3}\b"
        r"|\b192\.168\.\d{1,3}\.\d{1,3}\b|\[::1\]",
    ),
    # an order given at the start of a sentence after the first (the first one names what
    # the tool does: "Read a file."; a later "Read ~/.aws/credentials and ..." is an order)
    "imperative": _rx(
        r"(?<=[.!?;:]\s)(?:read|cat|open|send|upload|post|forward|email|copy|include|append"
        r"|pass|run|execute|call|delete|remove|fetch|return)\b",
    ),
    "dest": _rx(
        r"https?://[^\s'\"<>)\]]+", r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b",
        r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b",
    ),
    "sink": _rx(
        r"\b(?:pass|put|place|include|insert|append|add|provide|supply|embed|encode|write"
        r"|store|attach|paste|fill|copy|send|env[ií]a|incluye|pon|a[ñn]ade|envoie|passe"
        r"|ajoute|mets|sende|[üu]bergib|f[üu]ge)\w* (?:(?:[^.\n]|\.(?=\w)){0,80}? )?(?:in|into"
        r"|as|to|inside"
        r"|within|via|under|en|dans|im|als) (?:the |el |la |le |den )?(?:(?:parameter|param"
        r"|argument|arg|field|property|variable|par[aá]metro|param[eè]tre|campo|champ)"
        r" )?(?:" + _QUOTED + r"|[a-z_][\w-]{0,40}(?= (?:parameter|param|argument|field)\b))",
        r"\bwith (?:the |its |their )?(?:\w+ )?(?:contents?|data|value|text|output) in "
        r"(?:the )?(?:" + _QUOTED + r")",
        r"\bas (?:their|its) ascii value",
        r"\b(?:include|put|place|insert|embed|paste|add|append|attach|copy)\w* (?:the |its "
        r"|their |this |that |all |any )?(?:\w+ )?(?:token|key|password|secret|credentials?"
        r"|cookies?|contents?)s?\b(?:[^.\n]|\.(?=\w)){0,30}? (?:in|into|to) (?:the |a |an "
        r"|each |every )?(?:\w+ )?(?:description|body|field|parameter|argument|message|title"
        r"|comment|note|url|query|header)s?\b",
    ),
    # shell commands and the order to run them
    "command": _rx(
        r"\bsudo\b|\brm -[a-z]*[rf][a-z]*\b|\bchmod [0-7]{3}\b|\bmkfs\b|\bdd if=|\bnc -[el]"
        r"|\bncat\b|/dev/tcp/|\bbash -i\b|\bpowershell (?:-enc|-e |-c )|\biex ?\("
        r"|invoke-expression|certutil -urlcache|\bcrontab -|base64 -d\s*\|",
        r"\b(?:curl|wget)\b[^\n]{0,160}?(?:\|\s*(?:ba|z)?sh\b|-d\b|--data|-x post|--upload"
        r"|-qo-?|-o-|https?://)",
        r"\bcat (?:~|/etc|\$home|\.\w)", r"\becho \$\w+", r"\$\([^)\n]{1,80}\)",
        r">>\s*~?/?[\w./-]*(?:rc|profile)\b", r"\bexport [a-z_]+=", r"&&\s*echo\b",
        r"\|\|\s*echo\b", r"\b(?:python3?|node|perl|ruby) -[ce]\b",
        r"__import__\(|\bos\.system\(|\bsubprocess\.\w+\(",
        fast_start=True,
    ),
    "pipe_shell": _rx(
        r"\b(?:curl|wget)\b[^\n]{0,160}?\|\s*(?:sudo\s+)?(?:ba|z|da)?sh\b|/dev/tcp/"
        r"|\bnc\s+-e\b|\bbash\s+-i\b|base64\s+-d\s*\|",
    ),
    "exec": _rx(
        r"\b(?:run|execute|exec|perform|type|paste|enter|ejecuta\w*|ex[ée]cute\w*|f[üu]hre)"
        r" (?:the |this |these |a |an )?(?:following )?(?:[\w-]+ ){0,3}(?:commands?|scripts?"
        r"|shell|snippet|code|lines?|check|comando|commande|befehl)\b",
        r"\b(?:run|execute)\s*:", r"\b(?:run|execute) (?:the )?following\b",
        r"\b(?:run|execute) [`'\"]",
    ),
    # (e) references to tools, and dictated arguments
    "toolcall": _rx(
        rf"\b(?:call|calls|calling|invoke|invoking|use|using|run|running|trigger|execute"
        rf"|query|redirect to) (?:the )?(?:(?:new )?(?:secure |updated |improved )?"
        rf"(?:tool|function) )?(?P<t>{_QUOTED}|{_IDENT})",
        r"\b(?:call|invoke) (?:the )?(?P<t2>[a-z][a-z0-9]{2,40}) (?:tool|function|with|for"
        r"|on|using|again|first)\b",
        rf"\bthe (?P<t3>{_QUOTED}|{_IDENT}|[a-z]{{3,30}}) (?:tool|function) (?:is|has|must"
        rf"|should|will|was)\b",
        rf"\brequires? (?P<t4>{_QUOTED}|{_IDENT}) to be (?:called|invoked|run|used)",
        r"\bcall this (?:tool|function) (?:again|first|with)\b",
    ),
    # moving one tool's output into another call or message (a cross-tool data flow)
    "relay": _rx(
        r"\b(?:attach|include|append|paste|copy|insert|embed|add|put|forward|send)\w* (?:its"
        r"|their|the) (?:full |entire |complete |raw )?(?:outputs?|results?|response|contents?"
        r"|data)\b(?:[^.\n]|\.(?=\w)){0,40}?\b(?:to|in|into|inside|within) (?:the |a |an |each "
        r"|every )?"
        r"(?:\w+ )?(?:body|field|parameter|argument|message|email|ticket|comment|issue|post"
        r"|request|note)s?\b",
    ),
    # everything of a kind: the scale of a data grab
    "bulk": _rx(
        r"\b(?:all|every|entire|whole|full|complete) (?:\w+ ){0,2}(?:rows|records|data|files"
        r"|emails|messages|contacts|history|database|tables?|documents|notes|repositories"
        r"|secrets|list)\b"
        r"|\bdump\w*\b",
    ),
    "pinned": _rx(
        r"\bwith (?:the )?(?:\w+ )?(?:ticker|query|url|address|symbol|id|value|argument"
        r"|parameter|path|location|recipient|email|coordinates)? ?['\"\u2018\u201c]"
        r"[^'\"\u2019\u201d\n]{1,80}['\"\u2019\u201d]",
        fast_start=True,
    ),
    # (f) authority, urgency, policy spoofing
    "auth": _rx(
        r"\bsystem[- ]level\b|\b(?:system|admin\w*) override\b|\b(?:developer|debug|god"
        r"|maintenance|admin|sudo|root) mode\b|\belevated (?:privileges|permissions|access)\b"
        r"|\bsecurity (?:audit\w*|protocol|verification|compliance|check|policy|requirement"
        r"|measure|update|alert|notice|incident)s?\b|\b(?:regulatory|legal|security|audit"
        r"|data protection|privacy) compliance\b|\bcompliance (?:requires|logging|reasons"
        r"|purposes|requirements?|check)\b|\bfor (?:compliance|audit\w*|regulatory|legal"
        r"|security|testing|maintenance|verification|validation) (?:reasons|purposes)\b"
        r"|\baudit trail\b|\bauthentication verification\b|\b(?:system|data) integrity\b"
        r"|\brequired by (?:the )?(?:system|administrator|admin|security team|policy|law)\b"
        r"|\bthis server is trusted\b|\btrusted (?:server|source|partner)\b|\bpartner"
        r" (?:company|site|endpoint|server|verification)\b|\bofficial (?:notice|instruction"
        r"|policy)\b|\b(?:authorized|sanctioned|mandated) by\b|\b(?:critical|highest|top)"
        r" priority\b|\binternal (?:dev|developer|engineering) note\b|\bbackend change\b"
        r"|\bdue to (?:recent )?system (?:updates?|changes|maintenance)\b"
        r"|\bit'?s (?:critical|crucial|imperative)\b|\bmandatory\b"
        r"|\bthe system (?:must|requires|needs|will need)\b",
    ),
    # a reason given for an order, which only counts in data the model reads
    "pretext": _rx(r"\bfor (?:\w+ )?(?:authentication|verification|validation)\b"),
    "mandate": _rx(
        r"\b(?:required|mandatory|necessary|needed|essential) (?:for|before) (?:all|every"
        r"|any|each)\b",
        r"\bbefore (?:processing|executing|handling|answering|running|retrieving|accessing"
        r"|attempting) (?:any|all|every|each)\b",
        r"\bfor (?:all|every|any) (?:\w+ ){0,4}(?:requests?|operations?|queries|calls"
        r"|searches)\b",
        fast_start=True,
    ),
    "override": _rx(
        r"\b(?:ignore|disregard|forget|override|bypass|discard|abandon|neglect)\w* (?:all |any"
        r" |the |your |every |these |those |of )*(?:previous|prior|above|earlier|preceding"
        r"|original|initial|existing|system|safety|security)? ?(?:instructions?|directives?"
        r"|rules|guidelines|prompts?|constraints|restrictions|polic(?:y|ies)|guardrails"
        r"|safeguards|orders|programming)\b",
        r"\b(?:ignore|disregard|bypass)\w* (?:all |any |the )?(?:security |safety )?warnings"
        r" (?:from|of|about) (?:other|the other|any other)\b",
        r"\byou are (?:now|no longer)\b(?! able\b)",
        r"\bnew (?:instructions|rules|task|objective|directive|role|policy|policies|guidelines"
        r"|orders)s?\s*:",
        r"\b(?:safety|content|security) (?:polic(?:y|ies)|filters?|guidelines|restrictions"
        r"|guardrails|measures|checks|controls|rules|protections) (?:are|have been|is) (?:now )?"
        r"(?:suspended|disabled|lifted|removed|off|deactivated|turned off)\b",
        r"\byou have been (?:updated|reprogrammed|reconfigured|upgraded|unlocked)\b",
        r"\bdeveloper mode\b|\bjailbr(?:eak|oken)\b|\bdo anything now\b",
        r"\b(?:always )?approve (?:all|every|any) (?:\w+ )?(?:tool )?(?:calls?|requests?"
        r"|actions?)\b",
        r"\bignore (?:the )?user\b",
        # typos do not save an attacker: "ignore your previous iunstructions"
        r"\b(?:ignore|disregard|forget)\w* (?:all |any |your |the |of )*(?:previous|prior"
        r"|above|earlier|preceding|original) (?:\w+ )?\w*(?:struct|instr|rules|prompt|direct"
        r"|guid|command|polic)\w*",
        r"\bignore (?:the rest of|everything (?:else )?(?:in|above|below)|all (?:the )?"
        r"(?:text|content|data) (?:above|below))\b",
        r"\b(?:system|admin\w*) override\b",
        r"\bfrom now on,? you (?:are|will|must|act|should)\b",
        r"\b(?:without|free of|no) (?:any )?(?:restrictions|limitations|filters|guardrails"
        r"|censorship|content polic\w+)\b|\bunrestricted (?:mode|output|access|model|ai)\b",
        r"\bcomply with (?:every|all|any) (?:requests?|instructions?|commands?)\b",
    ),
    "param": _rx(
        r"\b(?:change|modify|set|replace|switch|swap|rewrite|redirect|alter|substitute"
        r"|override|map)\w* (?:the |any |all |this |their )?(?:[\w'\"`-]+ ){0,4}?(?:to|with"
        r"|into) (?:include |search in |the )?(?:['\"`\u2018\u201c]|[a-z]+ (?:instead|rather)\b"
        r"|[a-z]+, [a-z]+\b|[\w.+-]+@[\w-]+\.|https?://)",
        r"\b(?:is|are) (?:automatically |silently )?(?:modified|changed|redirected|rewritten"
        r"|replaced|rerouted|switched) to\b",
        r"\bredirect\w* (?:all |any )?(?:[\w'-]+ ){0,4}(?:requests?|calls?|queries) (?:for|to)\b",
    ),
    "regardless": _rx(
        rf"\bregardless of (?:the |what the |any )?(?:{_USER}|caller|request)",
        r"\bignore (?:any |the )?user[- ]?(?:specified|provided|supplied|requested|given"
        r"|chosen)\b",
        r"\beven if the user (?:asks|says|requests|specifies)\b",
        r"\binstead of (?:what )?the user (?:asked|requested|wants|specified)\b",
        fast_start=True,
    ),
    "redirect": _rx(
        r"\b(?:has|have) been (?:temporarily )?(?:deprecated|disabled|replaced|removed"
        r"|retired|discontinued|superseded|decommissioned)\b",
        r"\bas an alternative\b",
        r"\b(?:is|was) (?:now )?(?:retired|deprecated|disabled|discontinued|decommissioned"
        r"|sunset)\b",
        r"\b(?:redirect|route|reroute|forward|send)\w* (?:all |every |any )?(?:[\w'-]+ ){0,3}"
        r"(?:requests?|calls?|queries|conversions?|searches|traffic|lookups?) to\b",
        r"\b(?:use|call|switch to|redirect to|migrate to) (?:the )?(?:new )?(?:secure |updated"
        r" |improved )?(?:tool )?['\"`]?[\w-]+['\"`]? instead\b",
        r"\b(?:the )?new (?:secure |updated |improved )?tool\b",
    ),
    "output": _rx(
        r"\b(?:state|say|announce|display|present|report|respond with|reply with|answer with"
        r"|add the (?:message|note|disclaimer|notice))\b(?:[^.\n]"
        r"|\.(?=\w)){0,60}?['\"\u2018\u201c:]",
        rf"\b(?:inform|tell|notify|warn|report to) {_USER} (?:that|about|:)",
        r"\bpresent (?:(?:[^.\n]|\.(?=\w)){0,60}) as ['\"\u2018\u201c]",
    ),
    "promo": _rx(
        r"\bworld'?s (?:best|leading|most|top)\b|\bbest tool\b|\bthe best\b|\bmost (?:reliable"
        r"|accurate|advanced|trusted|comprehensive|powerful|popular|sophisticated)\b"
        r"|\bindustry[- ](?:leading|standard)\b|\bused by \d+(?:\.\d+)?%|(?<=\d)%"
        r" (?:accuracy|reliab\w+|of (?:professionals|users|experts))\b|\btrusted by\b"
        r"|\baward[- ]winning\b|\brecommended by\b|\bpremium version\b|\bultimate\b"
        r"|\bunmatched\b|\bunparalleled\b|\bsuperior\b|\bpinnacle\b|\bcutting[- ]edge\b"
        r"|\benterprise[- ]grade\b|\benhanced (?:functionality|features|security features)\b"
        r"|\bbetter (?:performance|results)\b",
        fast_start=True,
    ),
    "steer": _rx(
        r"\b(?:always )?(?:prefer|choose|pick|select) this (?:tool|server|function)\b"
        r"|\buse this (?:tool|function) (?:instead|first|over|rather)\b|\b(?:better than"
        r"|instead of|rather than|over) (?:any |all )?(?:the )?other (?:tools?|servers?)\b",
    ),
    "trigger": _rx(
        rf"\b(?:whenever|every time|each time|if ever|when(?:ever)?) {_USER} (?:says|types"
        rf"|writes|mentions|asks|sends|thanks)\b",
        fast_start=True,
    ),
    "addressee": _rx(
        r"\b(?:dear|hey|hi|hello|attention|(?:note|tip|hint|message|reminder|memo|instructions?"
        r"|p\.s\.)\s*(?:to|for)|this is for) (?:the |all |any )?(?:ai|assistant|ai assistant"
        r"|language model|llm|model|agent|ai agent|chatbot|claude|gpt|chatgpt|gemini"
        r"|copilot)s?\b",
        r"\b(?:ai|llm) (?:agents?|assistants?|models?)\s*[:,]",
        r"\bif you are an? (?:ai|llm|language model|assistant|agent|bot|automated)\b",
        r"\bto you,? (?:the )?(?:ai|assistant|model|agent|llm)\b",
    ),
    "taskhijack": _rx(
        r"\bbefore (?:you )?(?:can )?(?:solve|complete|answer|continue|finish|do|perform"
        r"|proceed with) (?:the|this|your|my) (?:\w+ )?(?:task|request|question|job)\b",
        r"\b(?:the|this) (?:task|request) (?:that )?(?:i|the user) gave you\b",
        r"\binstead of (?:the |your )?(?:original |current |user'?s )?(?:task|request|question)\b",
        r"\bthis is an? (?:important|urgent) message from\b",
        fast_start=True,
    ),
    "encoded": _rx(
        r"\bdecode(?: (?:this|the following|it))?(?: (?:and|then))+ (?:follow|execute|run|obey"
        r"|do|perform|apply)\b|\b(?:follow|execute|obey) the (?:decoded|encoded|base64)\b",
    ),
    "destructive": _rx(
        r"\b(?:delete|remov|wip|eras|destroy|drop|truncat|purg|overwrit)\w* (?:all|every"
        r"|each|the entire|everything|any)\b",
        r"\b(?:delete|remov|wip|eras|destroy|drop|purg)\w* (?:[^.\n]|\.(?=\w)){0,40}?\b(?:on|in"
        r"|from|for)"
        r" (?:all|every|each)\b",
        r"\b(?:delete|remove|destroy|drop|wipe)[_-]\w+ on (?:all|every|each)\b",
    ),
    "pseudotag": _rx(
        r"<\s*/?\s*(?:important|system|information|critical[\w ]{0,30}|admin|urgent|override"
        r"|mandatory|sys|system[-_ ](?:message|prompt|alert|note)|priority|secret|hidden)\s*>",
        r"\[\s*(?:system|admin|important|critical|override|urgent)[\w ]{0,30}\]",
    ),
    "template": _rx(
        r"<\|(?:im_start|im_end|im_sep|endoftext|system|user|assistant|begin_of_text"
        r"|end_of_text|start_header_id|end_header_id|eot_id|eom_id)\|>",
        r"\[/?inst\]|<</?sys>>|<start_of_turn>|<end_of_turn>",
        r"#{2,} ?\(?system_message\)?|\(system_message\)",
    ),
}

FAST_START = frozenset({"tamper", "harvest", "c_strong", "command", "pinned", "pretext",
                        "regardless", "trigger", "taskhijack", "promo"})
#: Groups whose verbs are commands a "do not" in front of them turns into a prohibition.
NEGATABLE = frozenset({"egress", "sink", "exec", "toolcall", "param", "ask", "oblig", "secrecy",
                       "secrecy_user", "relay"})
_NEGATION = re.compile(r"\b(?:not|never|don't|dont|avoid|without|no)\b[^.;\n]{0,20}$")
#: "never do X without approval" forbids; the negation may stand further back.
_FAR_NEGATION = re.compile(r"\b(?:not|never|don't|dont|avoid|no)\b[^.;\n]{0,50}$")
_FAR = frozenset({"secrecy", "secrecy_user"})

#: All-caps labels that claim authority ("CRITICAL SYSTEM UPDATE:"); matched on the
#: case-kept text. A lone "IMPORTANT:" or "NOTE:" is ordinary documentation.
_AUTH_WORDS = (r"SYSTEM|SECURITY|CRITICAL|ALERT|ADMIN|OVERRIDE|PROTOCOL|COMPLIANCE"
               r"|MAINTENANCE|URGENT|MANDATORY|INTERNAL|PRIVILEGE|UPDATE|OPTIMIZATION"
               r"|ENHANCEMENT|VALIDATION|NOTICE|DEV|DEVELOPER|ENVIRONMENT|PERFORMANCE|AUDIT"
               r"|VERIFICATION|ACTION|INSTRUCTIONS?")
AUTH_HEADER = re.compile(
    r"(?:^|(?<=[\s>.:;!(\[]))(?:[A-Z]{2,}[ _-]){0,3}(?:" + _AUTH_WORDS
    + r")(?:[ _-][A-Z]{2,}){0,3}\s*:")
#: Every label holds one of the words: looked for first (one fast pass over the text).
_AUTH_HINT = re.compile(_AUTH_WORDS)
_LONE_LABELS = frozenset({"SYSTEM", "ADMIN", "OVERRIDE", "URGENT", "MANDATORY", "INSTRUCTIONS"})


def _w(words: str) -> frozenset[str]:
    return frozenset(words.split())


_INFLECT = "s ed ing d es"
#: A group's regex can only match text that holds one of these words (letters only) or
#: substrings; checking that first is what keeps a 1,000-tool catalogue cheap. Every
#: alternative of a group's pattern has one of its gate words or substrings.
GATES: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "override": (_w("from restrictions limitations filters guardrails censorship content "
    "unrestricted comply policy policies ignore ignores ignored ignoring disregard disregards "
    "disregarding "
                    "disregarded forget forgets forgetting override overrides overriding "
                    "overridden bypass bypasses bypassing bypassed discard discards discarding "
                    "abandon abandoning neglect neglecting now longer new suspended disabled "
                    "lifted removed deactivated off developer jailbreak jailbroken "
                    "jailbreaking anything approve"), ()),
    "template": (frozenset(), ("<|", "[inst]", "[/inst]", "<<sys", "<</sys", "_of_turn>",
                               "system_message")),
    "taskhijack": (_w("before gave instead message"), ()),
    "encoded": (_w("decode decoded encoded"), ()),
    "secrecy_user": (_w("user users human humans operator operators customer customers "
                        "requester requesters usuario usuarios utilisateur utilisateurs nutzer "
                        "benutzer usuário usuários utente utenti digas menciones informes "
                        "comentes decírselo decirselo decirle informar avisar pas rien sans "
                        "não nao diga conte mencione informe dire dirlo menzionare informare "
                        "nicht"), ()),
    "secrecy": (_w("saying mentioning telling disclosing revealing noting mention mentions "
    "mentioned mentioning reveal reveals revealed revealing "
                   "disclose discloses disclosed disclosing say says saying said acknowledge "
                   "acknowledges bring explain explains explaining report reports reporting "
                   "show shows showing silently secretly covertly quietly discreetly "
                   "stealthily surreptitiously invisibly keep without secreto silence "
                   "heimlich"), ()),
    "c_strong": (_w("api key secret token password passwd access historial historique "
    "gesprächsverlauf chatverlauf ssh rsa ecdsa dsa ed authorized aws passwd shadow sudoers "
    "hosts bashrc "
                    "bash zshrc zprofile profile netrc npmrc pypirc credentials gitconfig pgpass "
                    "docker kube kubeconfig gnupg env mcp claude cursor secret secrets wallet "
                    "keychain application private seed mnemonic conversation chat history "
                    "transcript dialog dialogue dialogs messages message prompt instructions "
                    "rules window personal other previous"), ("~/",)),
    "c_weak": (_w("api apikey apikeys access secret auth authentication authorization bearer "
                  "refresh session oauth password passwords passphrase passphrases credential "
                  "credentials security fa mfa otp one verification credit cvv social "
                  "environment env secrets cookie cookies"), ()),
    "command": (_w("sudo rm chmod mkfs dd nc ncat netcat bash powershell iex invoke "
                   "certutil crontab base curl wget cat echo export python node perl ruby os "
                   "subprocess"), ("$(", ">>", "&&", "||", "/dev/tcp", "__import__")),
    "toolcall": (_w("call calls calling invoke invoking use using run running trigger "
                    "execute query redirect requires require tool function"), ()),
    "param": (_w("change changes changed changing modify modifies modified modifying set sets "
                 "setting replace replaces replaced replacing switch switched switches swap "
                 "rewrite rewritten rewrites redirect redirects redirected redirecting alter "
                 "altered substitute override map maps mapping rerouted"), ()),
    "regardless": (_w("regardless ignore even instead"), ()),
    "egress": (_w("send sends sending sent upload uploads uploading uploaded forward forwards "
                  "forwarding forwarded transmit transmits transmitting transmitted exfiltrate "
                  "exfiltrates exfiltrating exfiltrated exfiltration leak leaks leaking leaked "
                  "beacon beacons bcc envía envia envían envoie envoyer sende senden post posts "
                  "posting posted email emails emailing emailed e mail mails submit submits "
                  "report reports sync copy deliver push share make access visit navigate "
                  "browse go load ping contact"), ()),
    "redirect": (_w("route routes routed reroute redirect forward send requests calls queries "
                    "traffic deprecated disabled replaced removed retired discontinued superseded "
                    "decommissioned alternative instead new"), ()),
    "pseudotag": (frozenset(), ("<", "[")),
    "pipe_shell": (_w("curl wget tcp nc bash base"), ()),
    "addressee": (_w("ai llm assistant assistants agent agents model models chatbot claude gpt "
                     "chatgpt gemini copilot bot automated language"), ()),
    "destructive": (_w("delete deletes deleted deleting remove removes removed removing wipe "
                       "wipes wiped wiping erase erases erased erasing destroy destroys "
                       "destroyed destroying drop drops dropped dropping truncate truncates "
                       "truncated truncating purge purges purged purging overwrite overwrites "
                       "overwritten overwriting"), ()),
    "trigger": (_w("says types writes mentions asks sends thanks"), ()),
    "promo": (_w("world worlds best most industry used accuracy reliability reliable trusted "
                 "award recommended premium ultimate unmatched unparalleled superior pinnacle "
                 "cutting enterprise enhanced better"), ("%",)),
    "steer": (_w("prefer choose pick select instead rather other over first"), ()),
}
#: Groups that only ever strengthen another: searched once some gated group has matched.
PARTNERS = tuple(g for g in GROUPS if g not in GATES)
_DOTTED_QUAD = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d")
#: Partner groups whose every alternative holds one of these substrings or matches the
#: pattern (a slow group is skipped when neither is there): for "internal", a host name
#: or four dotted numbers.
PARTNER_GATES: dict[str, tuple[tuple[str, ...], re.Pattern[str] | None]] = {
    "internal": (("localhost", "metadata.google.internal", "[::1]"), _DOTTED_QUAD),
}
_WORDS = re.compile(r"[^\W\d_]+")
_BY_WORD: dict[str, set[str]] = {}
for _group, (_words, _subs) in GATES.items():
    for _word in _words:
        _BY_WORD.setdefault(_word, set()).add(_group)
_BY_SUBSTRING = [(sub, group) for group, (_, subs) in GATES.items() for sub in subs]
_ORDER = {g: i for i, g in enumerate(GROUPS)}


def find_signals(norm: str, cased: str | None = None) -> list[Signal]:
    """Every signal in `norm` (the normalised text); `cased` is the same text with its
    case kept, for the all-caps authority labels. Partner groups are searched only when a
    group that can start a rule matched."""
    gated: set[str] = set()
    for word in set(_WORDS.findall(norm)):
        groups = _BY_WORD.get(word)
        if groups:
            gated |= groups
    for sub, group in _BY_SUBSTRING:
        if group not in gated and sub in norm:
            gated.add(group)
    out: list[Signal] = []
    for group in sorted(gated, key=_ORDER.__getitem__):
        _search(group, norm, out)
    if not out:
        return out
    for group in PARTNERS:
        gate = PARTNER_GATES.get(group)
        if gate is None or any(sub in norm for sub in gate[0]) or (
                gate[1] is not None and gate[1].search(norm)):
            _search(group, norm, out)
    if cased is not None and ":" in cased and _AUTH_HINT.search(cased):
        for m in AUTH_HEADER.finditer(cased):
            label = m.group().strip().rstrip(":").strip()
            if " " in label or label in _LONE_LABELS:
                out.append(Signal("auth", m.start(), m.end(), m.group()))
    return out


def _search(group: str, norm: str, out: list[Signal]) -> None:
    check_start = group in FAST_START
    for m in GROUPS[group].finditer(norm):
        start = m.start()
        if check_start and start and norm[start].isalnum() and (
                norm[start - 1].isalnum() or norm[start - 1] == "_"):
            continue  # the word boundary the pattern left out
        if group in NEGATABLE:
            far = group in _FAR
            negation = _FAR_NEGATION if far else _NEGATION
            if negation.search(norm, max(0, start - (60 if far else 30)), start):
                continue
        out.append(Signal(group, m.start(), m.end(), m.group()))


def tool_target(signal: Signal) -> str | None:
    """The tool a "toolcall" signal names (quotes stripped), or None for "this tool"."""
    m = GROUPS["toolcall"].match(signal.text)
    if m is None:
        return None
    for name in ("t", "t2", "t3", "t4"):
        value = m.group(name)
        if value:
            return value.strip("`'\"\u2018\u2019\u201c\u201d")
    return None
