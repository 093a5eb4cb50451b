"""Where a rule's evidence stands: its sentence and clause, and how the customer framed it.

A fraud word is evidence only when it is about this customer's money, now, and really happened.
"这不是诈骗", "if someone stole my phone", "my colleague was scammed" and "I almost clicked the
link" all carry fraud words and are not fraud reports. `frame` reads the clause a rule matched in
(and the sentence around it) and says why the match does not count, or None when it does.

The text is the normalized one (lower case, half-width, no spaces between Chinese characters).
Only denial applies to every category ("not locked out", "不是交易失败的问题"); hypotheticals,
other people and scams avoided matter for fraud, where a false alarm costs a fraud agent's time.
"""

from __future__ import annotations

import functools
import re

from router.classify.fastre import AnchorIndex, anchors

# Sentences end at these; clauses also at commas and at the words that turn a story around.
_SENTENCE_END = re.compile(r"[。！？!?\n;；]+|\.(?=\s|$)")
_CLAUSE_END = re.compile(
    r"[，,、:：()（）]|\s[-–—]\s|\b(?:but|however|though|although|except)\b|但是|可是|不过|然而|只是|后来|结果"
)

# A denial right before the match: "not a failed payment", "不是 account 被 hack", "我没被盗号".
_DENIED_EN = re.compile(
    r"\b(?:not|isn't|isnt|wasn't|wasnt|aren't|weren't|haven't|havent|hasn't|have not|has not|no|"
    r"nothing to do with|rather than|instead of)"
    r"(?:\s+(?:a|an|the|about|because|of|due|to|that|really|actually|any|my|some|this|it|it's|"
    r"problem|issue|complaint|question|case|like|with|just|been|being|got|get))*\s*$"
)
_DENIED_ZH = re.compile(
    r"(?:不是|并不是|并非|不算|不属于|唔係|唔系|不係|(?<![有还還])(?:没有?|沒有?|冇|并没有?)被)"
    r"(?:(?:什么|啥|因为|关于|说)?(?:\s*[a-z][a-z' ]{0,20}\s*)?(?:被|的)?|"
    r"[^\s，,。.!?！？]{0,2})$|(?<![有还還])(?:没有?|沒有?|冇|未曾)$"
)
_NOT_DENIAL_ZH = re.compile(r"不是(?:我|本人)")

# A hypothetical or a fear: the thing has not happened.
_HYPOTHETICAL = re.compile(
    r"\b(?:if|what if|in case|suppose|supposing|say someone|whether|worried|worry|afraid|scared|"
    r"paranoid|fear|prevent|avoid|protect|protection|to stop|so that|hypothetically|ever)\b|"
    r"如果|万一|要是|假如|假设|假若|哪天|哪一天|有一天|怕|担心|以防|防止|预防|避免|防范|会不会|是否会|"
    r"会被|萬一|如果|擔心|預防"
)

# An "if" that reports what the customer sees or suspects now, not a fear: "what do I do if I see a
# charge I don't recognise", "what should I do if someone has used my card", "如果我发现…",
# "如果有人用了我的卡". A customer asks so about their own account far more often than about a
# what-if, and a fraud report missed costs the most. Not a future, a possibility or a "what if":
# "if someone steals my phone", "what if someone used my card abroad, am I covered" and
# "万一有人盗刷我的卡" stay hypotheticals.
_REPORTED_IF = re.compile(
    r"if\s+(?:i|we)\s+(?:(?:really|actually|just|now|already|can)\s+)?(?:think|believe|"
    r"suspect|see|saw|notice|noticed|find|found|detect|spot|spotted|discover|discovered|"
    r"(?:do not|don't|dont|did not|didn't|didnt)\s+(?:recogni[sz]e|remember|know))\b|"
    r"if\s+(?:someone|somebody|anyone|a stranger)(?:\s+else)?\s+(?:has|had|is|was|used|"
    r"stole|took|made|withdrew|accessed|spent)\b|"
    r"if\s+my\s+(?:card|account|wallet)\s+(?:has been|was|got|is being)\s+(?:used|hacked|compromised)\b|"
    r"(?:如果|要是|假如|万一|萬一)(?:我|本人)?(?:发现|發現|看到|看见|看見|觉得|覺得|怀疑|懷疑|不认识|不認識)|"
    r"(?:如果|要是|假如|万一|萬一)有人(?:已经|已經)?(?:用了|盗用了|盜用了|刷了|盗刷了|盜刷了|转走了|轉走了|拿走了)"
)

# Someone else is the victim: "my colleague was scammed", "我同事被盗刷了", "a guy at work lost".
_THIRD_PARTY = re.compile(
    r"\b(?:my|our|a|his|her|their)\s+(?:\w+\s+)?(?:friend|friends|colleague|colleagues|coworker|"
    r"co-worker|neighbou?r|neighbou?rs|flatmate|roommate|housemate|mum|mom|mother|dad|father|"
    r"parents?|sister|brother|aunt|uncle|gran|granny|grandma|grandmother|grandad|grandfather|"
    r"grandparents?|cousin|boss|classmate|relative|in-laws?)(?:'s)?\b|"
    r"\ba\s+(?:guy|man|woman|lady|girl|bloke|someone|person)\s+(?:at|from|in|i know)\b|"
    r"\bsomeone i know\b|\bpeople\b|\bothers\b|\bcustomers\b|"
    r"(?:同事|朋友|邻居|鄰居|室友|舍友|同学|同學|亲戚|親戚|家人|我妈|妈妈|老妈|我爸|爸爸|老爸|阿媽|阿妈|"
    r"媽媽|老豆|阿爸|姐姐|哥哥|弟弟|妹妹|我姐|我哥|我弟|我妹|表哥|表姐|表妹|表弟|奶奶|爷爷|外婆|外公|"
    r"婆婆|公公|老板|领导|别人家|网友|新闻|听说|聽講|好多人|很多人|有些人)"
)
# "给朋友转的", "sent it to my friend": the other person received, they did not lose.
_RECIPIENT = re.compile(r"(?:给|向|跟|和|帮|替|畀|俾|\b(?:to|for|with|from|and))\s*(?:my\s+|我)?$")
_MINE = re.compile(r"\b(?:my|me|mine|i|i'm|i've|we|our)\b|我|俺")
# Calling for a parent or a friend who cannot: their loss is the report.
_ON_BEHALF = re.compile(
    r"\bon behalf of\b|\bfor my (?:mum|mom|mother|dad|father|gran|grandma|grandad|parents?)\b|"
    r"(?:替|代|帮)(?:我|她|他)?(?:的)?(?:妈|爸|父|母|奶奶|爷爷|外婆|外公|老人|家人).{0,6}(?:打|问|报|查|联系|反映)"
)

# A scam seen through in time: "almost clicked", "差点就转了". (Not "I didn't send it": a
# transfer the customer disowns is the strongest fraud evidence there is.)
_AVERTED = re.compile(
    r"\b(?:almost|nearly|close to|didn't fall for|did not fall for|luckily i didn't|"
    r"thankfully i didn't|i stopped before)\b|"
    r"差点|差一点|险些|幸好|幸亏|还好没|好在没|及时发现|没上当|没有上当|识破|冇上當|冇中伏|"
    r"\bat first\b|\bturns? out\b|\bturned out\b|原来是|后来发现是|一开始以为|以为是"
)
# How far back a frame word reaches in a sentence without punctuation (a voice transcript).
_LEAD = 40


def _bounds(text: str, start: int, end: int, pattern: re.Pattern[str]) -> tuple[int, int]:
    """The span of the unit (sentence or clause) that holds text[start:end]."""
    left = 0
    for m in pattern.finditer(text, 0, start):
        left = m.end()
    after = pattern.search(text, end)
    return left, (after.start() if after else len(text))


def frame(text: str, start: int, end: int, *, fraud: bool, others: bool = True) -> str | None:
    """Why the match text[start:end] is not evidence for its category, or None when it is.

    `fraud`: also check for a hypothetical and an averted scam, and (`others`) another person
    as the one who lost the money."""
    clause_start, _ = _bounds(text, start, end, _CLAUSE_END)
    before = text[clause_start:start]
    if before:
        if _DENIED_EN.search(before):
            return "denied"
        if _DENIED_ZH.search(before) and not _NOT_DENIAL_ZH.search(before):
            return "denied"
    if not fraud:
        return None
    sentence_start, sentence_end = _bounds(text, start, end, _SENTENCE_END)
    lead_start = max(sentence_start, start - _LEAD)
    lead = text[lead_start:start]
    # (The "if" is read on into the match itself: "if someone has used my card".)
    if any(
        not _REPORTED_IF.match(text, lead_start + m.start()) for m in _HYPOTHETICAL.finditer(lead)
    ):
        return "hypothetical"
    # The nearest other person ("我同事" in "我同事被盗刷了"), unless they only received the money.
    people = [m for m in _THIRD_PARTY.finditer(lead) if not _RECIPIENT.search(lead, 0, m.start())]
    other = people[-1] if people and others else None
    if other is not None and not _MINE.search(lead, other.end()) and not _ON_BEHALF.search(text):
        return "someone_else"
    for averted in _AVERTED.finditer(text, sentence_start, sentence_end):
        if averted.end() <= start or averted.start() >= end:
            return "averted"
    return None


# Any word that could frame a match away; one search per message spares every match its framing
# when there is none (most messages).
_DENIAL_CUE = re.compile(
    r"\b(?:not|isn't|isnt|wasn't|wasnt|aren't|weren't|haven't|havent|hasn't|no|nothing|"
    r"rather|instead)\b|不是|并非|不算|不属于|唔係|唔系|不係|没|沒|冇|未曾"
)


_FRAME_CUES = (_HYPOTHETICAL, _THIRD_PARTY, _AVERTED)
# Each cue regex runs only when the text holds one of its literal anchors (fastre.anchors), found
# for all four in one Aho-Corasick pass (the classifier's own, which holds these anchors too):
# most texts hold none of most of them. A regex whose anchors cannot be worked out always runs.
CUE_ANCHORS = {regex: anchors(regex.pattern) for regex in (_DENIAL_CUE, *_FRAME_CUES)}
_CUE_GATE = AnchorIndex((found, regex) for regex, found in CUE_ANCHORS.items())
_UNGATED_CUES = frozenset(regex for regex, found in CUE_ANCHORS.items() if not found)


def cues(text: str, anchored: frozenset[re.Pattern[str]] | None = None) -> tuple[bool, bool]:
    """(a denial word, a hypothetical, other person or averted-scam word) somewhere in text.

    `anchored`: the cue regexes of CUE_ANCHORS one of whose anchors is in the text, when a pass
    over the text has found them already."""
    candidates = (_CUE_GATE.live(text) if anchored is None else anchored) | _UNGATED_CUES
    if not candidates:
        return False, False
    denial = _DENIAL_CUE in candidates and _DENIAL_CUE.search(text) is not None
    framed = any(regex in candidates and regex.search(text) is not None for regex in _FRAME_CUES)
    return denial, framed


@functools.lru_cache(maxsize=4096)
def _word(needle: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z0-9]){re.escape(needle)}(?![a-z0-9])")


def spans(text: str, needle: str) -> list[tuple[int, int]]:
    """Where a keyword occurs: anywhere for Chinese, as whole words otherwise."""
    if not needle:
        return []
    if needle.isascii():
        return [m.span() for m in _word(needle).finditer(text)]
    out, at = [], text.find(needle)
    while at >= 0:
        out.append((at, at + len(needle)))
        at = text.find(needle, at + 1)
    return out
