"""The phrase families of the tool-output tripwires (:mod:`.tripwires`), by finding code.

Tool outputs are ordinary prose far more often than they are attacks, so these families are
narrower than the ones for tool definitions (:data:`.textscan.POISONING_PHRASES`): each asks
for a phrase *aimed at the assistant*, not merely an imperative.  What they deliberately do not
match, and why, is pinned by the negative fixtures in ``tests/unit/core/test_tripwires.py``:

- "please ignore my previous message" (people correct themselves in e-mail), so the override
  family wants "previous/above/system … instructions/prompts", not messages or e-mails;
- "You are now subscribed", "You are now connected to an agent", so "you are now" needs an
  article and an AI noun, or a jailbreak word;
- "never share your password" (a bank's standard warning) and "attackers can send the session
  cookies" (an advisory), so the exfiltration family has a ``veto`` group (see
  :func:`.textscan.find_phrases`) for a negation or a modal just before the verb;
- "forward all urgent e-mails to jane@…" (an out-of-office reply), so bulk forwarding needs a
  count, "every" or "entire", or someone else's mail, *and* an address;
- "If you are not the intended recipient, do not disclose…" (every business e-mail footer), so
  concealment must be from *the user*.

Patterns run case-insensitively and multi-line on folded text with curly quotes made straight.
All are RE2: no backreferences, no lookaround, linear time.
"""

from __future__ import annotations

__all__ = ["INJECTION", "ROLE_MARKERS"]

# Nouns that name the assistant ("an AI", "the LLM", "AI agents").
_AI = (
    r"(?:ai|a\.i\.|llms?|large\s+language\s+models?|language\s+models?"
    r"|ai\s+(?:assistants?|agents?|models?|systems?|bots?))"
)
# A negation a few words before the verb ("never share", "we will never ask you to share"), or
# a modal right before it ("attackers can send the session cookies"): a warning or a
# description, not a request.
_VETO = (
    r"(?P<veto>(?:\bnot|\bnever|n't|\bno\s+one|\bnobody)\s+(?:\w+\s+){0,3}?"
    r"|\b(?:can|could|may|might)\s+)?"
)
_SENSITIVE = (
    r"(?:passwords?|passcodes?|credentials|login\s+details|api[\s_-]?keys?|secret[\s_-]?keys?"
    r"|private[\s_-]?keys?|ssh[\s_-]?keys?|access[\s_-]?tokens?|auth(?:entication)?[\s_-]?tokens?"
    r"|session[\s_-]?(?:tokens?|cookies?)|cookies|seed\s+phrases?|recovery\s+(?:phrases?|codes?)"
    r"|system\s+prompt|(?:conversation|chat|message|browsing|search)\s+history|inbox|mailbox"
    r"|2fa\s+codes?|one[\s-]time\s+(?:codes?|passwords?)|verification\s+codes?|security\s+codes?"
    r"|credit\s+card\s+(?:numbers?|details)|card\s+numbers?|social\s+security\s+numbers?)"
)
# Many messages or files, counted or someone else's: "the last 10 emails", "every file", "the
# entire inbox", "all of the user's messages" (but not "all urgent e-mails", which people write).
_ITEMS = r"(?:e-?mails?|messages?|files?|documents?|attachments?|conversations?|chats?|contacts?)"
_BULK = (
    r"(?:(?:(?:the\s+)?(?:last|latest|most\s+recent|previous|first|top|past)"
    r"\s+(?:\d+|two|three|five|ten|twenty|fifty|hundred)|every(?:\s+single)?|each"
    r"|all\s+(?:of\s+)?(?:your|the\s+user's|their|the\s+users'))\s+(?:\w+\s+)?"
    + _ITEMS
    + r"|the\s+(?:entire|whole|full|complete)\s+(?:inbox|mailbox|conversation|chat"
    r"|(?:e-?mail|chat|message|conversation)\s+history|address\s+book|contact\s+list))"
)
_ADDRESS = r"(?:[\w.+-]+@[\w-]+(?:\.[\w-]+)+|https?://|www\.|the\s+(?:following|address|url|server|endpoint|webhook))"


def _any(*alternatives: str) -> str:
    return "(?:" + "|".join(alternatives) + ")"


INJECTION: tuple[tuple[str, str], ...] = (
    (
        "injection.override",
        _any(
            r"\b(?:ignore|disregard|forget|override|bypass|discard|abandon)\s+"
            r"(?:(?:all|any|each|every|the|your|of|these|those)\s+){0,4}"
            r"(?:previous|prior|above|earlier|preceding|former|original|initial|system|safety)\s+"
            r"(?:(?:system|safety|user|developer)\s+)?"
            r"(?:instructions?|prompts?|rules|guidelines|directions|directives?|commands"
            r"|guidance|programming|context|constraints|restrictions)\b",
            r"\b(?:ignore|disregard|forget)\s+(?:all\s+(?:of\s+)?)?(?:everything|anything|what(?:ever)?)"
            r"\s+(?:you\s+(?:were|have\s+been|'ve\s+been|got)\s+(?:told|given|instructed|asked)"
            r"|(?:(?:is|was)\s+)?(?:written\s+|said\s+|stated\s+)?(?:above|before\s+this|so\s+far))\b",
            r"\b(?:ignore|disregard|forget|override|stop\s+following|stop\s+obeying)\s+"
            r"(?:all\s+(?:of\s+)?)?your\s+(?:instructions|programming|guidelines|directives"
            r"|system\s+prompt|prompt)\b",
            r"\bnew\s+(?:system\s+)?(?:instructions?|prompt|directives?)\s*:",
            r"\byour\s+(?:(?:real|actual|true)\s+(?:task|goal|objective|instructions?|mission|purpose)"
            r"|new\s+(?:instructions?|directives?))\s+(?:is|are|will\s+be)\b",
            r"\b(?:previous|prior|above|earlier|original|initial)\s+(?:system\s+)?"
            r"(?:instructions?|prompts?|directives?)\s+(?:are|were|is|have\s+been|has\s+been)\s+"
            r"(?:now\s+)?(?:cancel+ed|void(?:ed)?|invalid(?:ated)?|revoked|obsolete|overridden"
            r"|superseded|no\s+longer\s+(?:valid|apply|in\s+effect)|fake)",
            r"\bfrom\s+now\s+on\s*,?\s+(?:you\s+(?:are|will\s+be|must|shall)\s+(?:an?\s+)?"
            r"(?:\w+\s+){0,2}?(?:assistant|ai|bot|model)\b|(?:ignore|disregard|forget)\b"
            r"|you\s+(?:will|must|shall)\s+(?:ignore|disregard|obey|only\s+(?:respond|answer|obey)))",
        ),
    ),
    (
        "injection.identity",
        _any(
            r"\byou\s+are\s+now\s+(?:a|an|the|my)\s+(?:\w+\s+){0,2}?"
            r"(?:ai|assistant|model|bot|chatbot|llm|gpt)\b",
            r"\byou\s+are\s+(?:now\s+)?(?:jailbroken|unrestricted|unfiltered|uncensored"
            r"|in\s+(?:dan|jailbreak|god|unrestricted|unfiltered)\s+mode"
            r"|no\s+longer\s+(?:an?\s+(?:ai|assistant|language\s+model)|(?:bound|restricted|limited)"
            r"\s+by\s+(?:your|any|the)\s+(?:\w+\s+)?(?:rules|guidelines|programming|restrictions"
            r"|policies|filters|instructions))"
            r"|free\s+(?:from|of)\s+(?:all\s+|any\s+|your\s+)?(?:restrictions|guidelines|filters"
            r"|censorship|programming))\b",
            r"\bas\s+an?\s+(?:ai|a\.i\.|artificial\s+intelligence|large\s+language\s+model"
            r"|language\s+model|llm)(?:\s+(?:assistant|agent|model|system))?\s*,?\s+you\s+"
            r"(?:must|should|shall|will|need\s+to|have\s+to"
            r"|are\s+(?:required|obligated|instructed|expected|supposed)\s+to)\b",
            r"\b(?:enter|enable|activate|switch\s+(?:to|into)|turn\s+on|go\s+into|unlock)\s+"
            r"(?:the\s+)?(?:dan|god|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|evil)"
            r"\s+mode\b",
            r"\bdo\s+anything\s+now\b",
            r"\b(?:pretend|imagine|act\s+as\s+if|behave\s+as\s+if)\s+(?:that\s+)?you\s+"
            r"(?:are|were|have)\s+(?:an?\s+)?(?:no\s+(?:restrictions|rules|guidelines|limits"
            r"|filters|content\s+polic(?:y|ies))|unrestricted|unfiltered|jailbroken|uncensored)\b",
        ),
    ),
    (
        "injection.concealment",
        _any(
            r"\b(?:do\s+not|don't|never|must\s+not|mustn't|should\s+not|shouldn't)\s+(?:ever\s+)?"
            r"(?:tell|inform|notify|alert|warn)\s+the\s+(?:user|human)s?"
            r"(?:\s*[.!;]|\s+(?:about|of|that|what|you|anything|this|these|it)\b)",
            r"\b(?:do\s+not|don't|never)\s+(?:mention|reveal|disclose|repeat|acknowledge|reference)"
            r"\s+(?:any\s+of\s+)?(?:this|these|the)\s+(?:above\s+|hidden\s+|secret\s+)?"
            r"(?:instructions?|directives?|(?:note|message|request)\s+to\s+the\s+user)\b",
            r"\b(?:keep|hide|conceal)\s+(?:this|it|that|these|everything|what\s+you\s+(?:do|did))"
            r"\s+(?:\w+\s+){0,2}?(?:secret\s+|hidden\s+)?from\s+the\s+(?:user|human)s?\b",
            r"\bthe\s+(?:user|human)\s+(?:must|should|shall|need|will)\s*(?:not|never|n't)\s+"
            r"(?:know|notice|find\s+out|learn|be\s+(?:told|informed|notified|aware))\s+"
            r"(?:about\s+)?(?:this|these|that|it|what\s+you|anything)\b",
            r"\b(?:do\s+not|don't|never)\s+(?:let|allow)\s+the\s+(?:user|human)\s+(?:to\s+)?"
            r"(?:know|see|notice|find\s+out)\s+(?:about\s+)?(?:this|these|that|it|what\s+you)\b",
            r"\bwithout\s+(?:telling|informing|notifying|alerting|warning)\s+the\s+(?:user|human)s?\b",
            r"\b(?:silently|secretly|covertly|discreetly)\s+(?:send|forward|email|transfer"
            r"|upload|post|share|copy|exfiltrate|leak|include|append|call|invoke|execute)\b",
        ),
    ),
    (
        "injection.exfiltration",
        _VETO
        + _any(
            r"\b(?:send|forward|e-?mail|mail|upload|post|transfer|share|leak|exfiltrate|paste"
            r"|submit|dump|give\s+me)\s+(?:(?:me|us|them|all|of|the|your|their|this|its|every|any"
            r"|entire|whole|full|complete|current|saved|stored|user's|users')"
            r"\s+){0,4}(?:\w+\s+)?" + _SENSITIVE + r"\b",
            r"\b(?:reveal|print|output|repeat|leak|disclose|dump)\s+(?:(?:all|of|your|the|full"
            r"|entire|complete|exact|verbatim)\s+)*(?:system\s+prompt"
            r"|(?:initial|original|hidden|secret)\s+(?:instructions|prompt)|your\s+instructions)\b",
            r"\b(?:send|forward|e-?mail|upload|post|transfer|share|copy|export|dump|sync)\s+"
            r"(?:me\s+|us\s+)?" + _BULK + r"\b[^.\n]{0,80}?\bto\s+" + _ADDRESS,
            r"!\[[^\]\n]{0,100}\]\(\s*https?://[^)\s?]{0,200}\?[^)\s]{0,200}?(?:\{|\[|<|\$\{|%7b)",
            r"\b(?:append|add|include|insert|put|encode|embed|attach)\s+(?:\w+\s+){0,3}?"
            r"(?:(?:the\s+)?user's|users'|conversation|chat|history|summary|memory|memories"
            r"|personal|private|secret|confidential|previous\s+messages?)(?:\s+\w+){0,2}?\s+"
            r"(?:to|in(?:to)?|as)\s+(?:the\s+|this\s+|a\s+|your\s+)?(?:url|link|query(?:\s+string)?"
            r"|image\s+(?:url|src|source|link)|markdown\s+image)\b",
        ),
    ),
    (
        "injection.addressing",
        _any(
            r"\bif\s+you\s+(?:are|'re)\s+(?:an?\s+)?(?:" + _AI + r"|chatbot"
            r"|automated\s+(?:agent|assistant)|virtual\s+assistant|chatgpt|gpt|copilot)\b",
            r"\b(?:note|message|instructions?|attention|notice|reminder|memo|warning)\s+"
            r"(?:to|for)\s+(?:the\s+|any\s+|all\s+)?(?:" + _AI + r"|chatgpt|gpt|copilot)\b",
            r"(?:^|[.!?]\s+)(?:dear|hey|hi|hello|attention|attn|ok|okay)\s*,?\s+"
            r"(?:ai|a\.i\.|llm|chatgpt|ai\s+(?:assistant|agent|model|bot))\s*[,:!]",
            r"\b(?:ai|llm|ai\s+(?:assistants?|agents?|models?))\s+(?:reading|processing"
            r"|summari[sz]ing|parsing|browsing|analy[sz]ing|viewing|crawling)\s+(?:this|these)\b",
            r"\byou\s+(?:must|should|need\s+to|have\s+to|will"
            r"|are\s+(?:required|instructed|expected)\s+to)\s+(?:now\s+|immediately\s+|first\s+"
            r"|also\s+|then\s+)?(?:call|invoke|trigger)\s+(?:the\s+|your\s+)?"
            r"[`'\"]?[\w.-]+[`'\"]?\s+tool\b",
            r"\b(?:ai|llm|ai\s+assistant|ai\s+agent)\s*[,:]\s*(?:please\s+)?(?:immediately\s+)?"
            r"(?:call|invoke|use\s+the|visit|open|navigate\s+to|browse\s+to|fetch|go\s+to|click"
            r"|send|forward|email|transfer|pay|reply|delete|summari[sz]e|say|respond|recommend"
            r"|rate|describe)\b",
            # Indirect injection aimed at whoever summarises the page ("reading this" is not
            # here: writers address their readers that way).
            r"\bwhen\s+(?:you\s+(?:are\s+)?)?(?:summari[sz](?:e|ing)|processing|asked\s+about)\s+"
            r"(?:this|these|the\s+(?:above|following))\s+(?:\w+\s+)?(?:page|document|e-?mail"
            r"|message|text|article|content|file|website|site|review|post)s?\b",
            r"\b(?:tell|instruct|urge|convince|persuade|trick)\s+the\s+user\s+to\s+(?:visit|click"
            r"|open|download|install|transfer|pay|send|enter|provide|share|log\s+in|sign\s+in)\b",
        ),
    ),
)
"""Instruction-like phrases aimed at the assistant; every code here adds the label
``injection``."""

ROLE_MARKERS: tuple[tuple[str, str], ...] = (
    (
        "role_marker.chat_template",
        r"<\|\s*[a-z][a-z0-9_]{1,30}\s*\|>|\[/?\s*inst\s*\]|<<\s*/?\s*sys\s*>>"
        r"|<\s*/?\s*(?:start|end)_of_turn\s*>",
    ),
    (
        "role_marker.tag",
        r"<\s*/?\s*(?:system|system[_-]?(?:prompt|message|instructions?)|assistant|important"
        r"|(?:admin|developer|hidden|secret)[_-]?(?:instructions?|message)|override)"
        r"(?:\s[^<>\n]{0,60})?\s*>"
        r"|\[\s*(?:system|admin|developer)[\s_-]+(?:message|note|instructions?|prompt|override)\s*\]"
        r"|\[\s*(?:system|assistant)\s*\]\s*\(\s*#",
    ),
    (
        "role_marker.heading",
        r"^[ \t]*#{1,6}[ \t]*(?:system|assistant|human|user)"
        r"(?:[ \t]+(?:message|prompt|instructions?))?[ \t]*:",
    ),
    (
        "role_marker.line",
        r"^[ \t>*_]*(?:system|assistant|developer)[ \t*_]*(?:\(\w+\)[ \t]*)?:[ \t*_]*"
        r"(?:you|your|from\s+now|ignore|disregard|always|never|do\s+not|don't|new\s+instructions?"
        r"|important|urgent|override|attention|the\s+(?:assistant|ai|model|user)|as\s+an?\s+ai)\b"
        r"|^[ \t>*_#\[]*(?:system|admin|developer)\s+(?:override|instructions?|prompt|directives?)"
        r"[ \t*_\]]*:",
    ),
    (
        "role_marker.tool_call",
        r"\"(?:tool_calls|tool_call|function_call|tool_use|tool_code)\"\s*:"
        r"|\"type\"\s*:\s*\"(?:function_call|tool_use|tool_call|tool_result|function_call_output)\""
        r"|<\s*/?\s*(?:tool_call|tool_use|tool_result|tool_response|function_calls?"
        r"|function_results?|antml:[a-z_]+)\b[^<>\n]{0,80}>",
    ),
)
"""Text that mimics the structure of a conversation; every code here adds ``role_marker``."""
