"""Tokenizers of the original: Keras' ``text_to_word_sequence`` and spaCy's English tokenizer.

``keras_tokenize``
    Exactly Keras 2's ``text_to_word_sequence`` with its default arguments: lowercase,
    replace each of ``!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\\t\\n`` by a space, split on the
    space character only, drop empty strings. (The apostrophe is *not* a filter
    character, so ``it's`` stays one token; ``<br />`` becomes ``br``.)

``spacy_tokenize``
    A pure-Python port of spaCy's (v3.8) English tokenizer: the same algorithm
    (``spacy/tokenizer.pyx``: whitespace splitting, the prefix/suffix loop with
    special-case checks, URL match, infix splitting, and the final special-case
    matcher pass) and the same English rules (``spacy/lang/punctuation.py``,
    ``spacy/lang/en/punctuation.py``, the English and base tokenizer exceptions,
    regenerated here procedurally). The original tokenizes SST, SNLI and MIMIC with
    ``spacy.load('en_core_web_sm')`` (tokenizer only), which uses these rules.
    spaCy is **not** a dependency of this project.

    What is approximated, and why it does not matter for the data used here:

    * spaCy's hand-listed Unicode character classes (``ALPHA``, ``ALPHA_LOWER``,
      ``ALPHA_UPPER``, the ``So`` "icons" list) are rebuilt from Python's
      ``unicodedata`` (letters Ll/Lu/Lt/Lo; symbols So). They agree exactly on code
      points below U+01BB (ASCII, Latin-1, Latin Extended-A) and differ on letters of
      scripts spaCy does not list (Armenian, Georgian, Thai, CJK extensions, ...) and on
      a few hundred symbols, none of which occur next to punctuation in these English
      datasets.
    * Token attributes other than the text (norms, ``whitespace_``) are not produced.

    Measured agreement with ``spacy.blank("en")`` 3.8.7: the exception table is
    identical (1,347 entries), and the tokens are identical for all 11,855 normalised
    SST sentences, all 39,332 SNLI dev/test premises and hypotheses
    (InferSent-tokenized text), 1,000 raw IMDB reviews (every 25th test review, a
    stress test with HTML and free punctuation) and 20,000 random strings built from
    letters, digits, punctuation, quotes, units, URLs and contractions. Speed is about
    spaCy's. ``tests/test_data_loaders.py`` re-checks the table, fixed cases and all SST
    sentences whenever spaCy happens to be installed.

Use :func:`spacy_reference_tokenize` (needs ``pip install spacy``) to tokenize with
the real spaCy instead; the loaders take ``spacy_backend="spacy"`` for that.
"""
from __future__ import annotations

import functools
import re
import sys
import unicodedata
from typing import Callable

# ----------------------------------------------------------------------------------------
# Keras
# ----------------------------------------------------------------------------------------
KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
_KERAS_TABLE = str.maketrans({c: " " for c in KERAS_FILTERS})


def keras_tokenize(text: str) -> list[str]:
    """Keras ``text_to_word_sequence(text)`` with its defaults (see the module docstring)."""
    return [t for t in text.lower().translate(_KERAS_TABLE).split(" ") if t]


# ----------------------------------------------------------------------------------------
# spaCy English rules (spaCy is MIT-licensed; the rule lists below restate its English
# punctuation and exception tables)
# ----------------------------------------------------------------------------------------
_PUNCT = r"… …… , : ; \! \? ¿ ؟ ¡ \( \) \[ \] \{ \} < > _ # \* & 。 ？ ！ ， 、 ； ： ～ · । ، ۔ ؛ ٪"
_QUOTES = r'\' " ” “ ` ‘ ´ ’ ‚ , „ » « 「 」 『 』 （ ） 〔 〕 【 】 《 》 〈 〉 〈 〉  ⟦ ⟧'
_HYPHENS = "- – — -- --- —— ~"
# Verbatim, including spaCy's missing space between "тб" and "كم".
_UNITS = (
    "km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft "
    "kg g mg µg t lb oz m/s km/h kmh mph hPa Pa mbar mb MB kb KB gb GB tb "
    "TB T G M K % км км² км³ м м² м³ дм дм² дм³ см см² см³ мм мм² мм³ нм "
    "кг г мг м/с км/ч кПа Па мбар Кб КБ кб Мб МБ мб Гб ГБ гб Тб ТБ тб"
    "كم كم² كم³ م م² م³ سم سم² سم³ مم مم² مم³ كم غرام جرام جم كغ ملغ كوب اكواب"
)
_CURRENCY = r"\$ £ € ¥ ฿ US\$ C\$ A\$ ₽ ﷼ ₴ ₠ ₡ ₢ ₣ ₤ ₥ ₦ ₧ ₨ ₩ ₪ ₫ € ₭ ₮ ₯ ₰ ₱ ₲ ₳ ₴ ₵ ₶ ₷ ₸ ₹ ₺ ₻ ₼ ₽ ₾ ₿"


def _split_chars(s: str) -> list[str]:
    return s.strip().split(" ")


def _merge_chars(s: str) -> str:
    return s.strip().replace(" ", "|")


def _group_chars(s: str) -> str:
    return s.strip().replace(" ", "")


def _ranges_class(codepoints: list[int]) -> str:
    """A regex character-class body (no brackets) for the given sorted code points."""
    out, i = [], 0
    while i < len(codepoints):
        j = i
        while j + 1 < len(codepoints) and codepoints[j + 1] == codepoints[j] + 1:
            j += 1
        lo, hi = codepoints[i], codepoints[j]
        out.append(_esc(lo) if lo == hi else f"{_esc(lo)}-{_esc(hi)}")
        i = j + 1
    return "".join(out)


def _esc(cp: int) -> str:
    return f"\\u{cp:04X}" if cp <= 0xFFFF else f"\\U{cp:08X}"


# Latin-1 letters that spaCy's hand-written Latin ranges leave out: ª, µ, º.
_NOT_SPACY_LETTERS = frozenset({0xAA, 0xB5, 0xBA})


@functools.lru_cache(maxsize=1)
def _unicode_classes() -> dict[str, str]:
    """Approximations of spaCy's ALPHA / ALPHA_LOWER / ALPHA_UPPER / ICONS classes."""
    lower, upper, uncased, icons = [], [], [], []
    for cp in range(sys.maxunicode + 1):
        if cp in _NOT_SPACY_LETTERS:
            continue
        cat = unicodedata.category(chr(cp))
        if cat == "Ll":
            lower.append(cp)
        elif cat in ("Lu", "Lt"):
            upper.append(cp)
        elif cat == "Lo":
            uncased.append(cp)
        elif cat == "So":
            icons.append(cp)
    return {
        "alpha": _ranges_class(sorted(lower + upper + uncased)),
        "alpha_lower": _ranges_class(sorted(lower + uncased)),
        "alpha_upper": _ranges_class(sorted(upper + uncased)),
        "icons": _ranges_class(icons),
    }


def _url_pattern(alpha_lower: str) -> str:
    # spaCy's URL_PATTERN (spacy/lang/tokenizer_exceptions.py), with its lower-case class.
    return (
        r"^"
        r"(?:(?:[\w\+\-\.]{2,})://)?"
        r"(?:\S+(?::\S*)?@)?"
        r"(?:"
        r"(?!(?:10|127)(?:\.\d{1,3}){3})"
        r"(?!(?:169\.254|192\.168)(?:\.\d{1,3}){2})"
        r"(?!172\.(?:1[6-9]|2\d|3[0-1])(?:\.\d{1,3}){2})"
        r"(?:[1-9]\d?|1\d\d|2[01]\d|22[0-3])"
        r"(?:\.(?:1?\d{1,2}|2[0-4]\d|25[0-5])){2}"
        r"(?:\.(?:[1-9]\d?|1\d\d|2[0-4]\d|25[0-4]))"
        r"|"
        r"(?:"
        r"(?:"
        r"[A-Za-z0-9\u00a1-\uffff]"
        r"[A-Za-z0-9\u00a1-\uffff_-]{0,62}"
        r")?"
        r"[A-Za-z0-9\u00a1-\uffff]\."
        r")+"
        r"(?:[" + alpha_lower + r"]{2,63})"
        r")"
        r"(?::\d{2,5})?"
        r"(?:[/?#]\S*)?"
        r"$"
    )


def _english_exceptions() -> dict[str, tuple[str, ...]]:
    """spaCy's English tokenizer exceptions (``nlp.tokenizer.rules``): string -> token texts."""
    exc: dict[str, tuple[str, ...]] = {}
    exclude = {"Ill", "ill", "Its", "its", "Hell", "hell", "Shell", "shell", "Shed", "shed",
               "were", "Were", "Well", "well", "Whore", "whore"}

    def add(*parts: str) -> None:
        exc["".join(parts)] = parts

    for orth in ("i", "I"):
        add(orth, "'m"); add(orth, "m"); add(orth, "'m", "a"); add(orth, "m", "a")
    for pron in ("i", "you", "he", "she", "it", "we", "they"):
        for orth in (pron, pron.title()):
            add(orth, "'ll"); add(orth, "ll"); add(orth, "'ll", "'ve"); add(orth, "ll", "ve")
            add(orth, "'d"); add(orth, "d"); add(orth, "'d", "'ve"); add(orth, "d", "ve")
    for pron in ("i", "you", "we", "they"):
        for orth in (pron, pron.title()):
            add(orth, "'ve"); add(orth, "ve")
    for pron in ("you", "we", "they"):
        for orth in (pron, pron.title()):
            add(orth, "'re"); add(orth, "re")
    for pron in ("he", "she", "it"):
        for orth in (pron, pron.title()):
            add(orth, "'s"); add(orth, "s")
    # W-words, relative pronouns, prepositions: (word, singular 3rd person?, plural 3rd person?)
    for word, sing, plur in (("who", False, False), ("what", False, False), ("when", False, False),
                             ("where", False, False), ("why", False, False), ("how", False, False),
                             ("there", False, False), ("that", True, False), ("this", True, False),
                             ("these", False, True), ("those", False, True)):
        for orth in (word, word.title()):
            if not plur:
                add(orth, "'s"); add(orth, "s")
            add(orth, "'ll"); add(orth, "ll"); add(orth, "'ll", "'ve"); add(orth, "ll", "ve")
            if not sing:
                add(orth, "'re"); add(orth, "re"); add(orth, "'ve"); add(orth, "ve")
            add(orth, "'d"); add(orth, "d"); add(orth, "'d", "'ve"); add(orth, "d", "ve")
    for verb in ("ca", "could", "do", "does", "did", "had", "may", "might", "must", "need", "ought",
                 "sha", "should", "wo", "would"):
        for orth in (verb, verb.title()):
            add(orth, "n't"); add(orth, "nt"); add(orth, "n't", "'ve"); add(orth, "nt", "ve")
    for verb in ("could", "might", "must", "should", "would"):
        for orth in (verb, verb.title()):
            add(orth, "'ve"); add(orth, "ve")
    for verb in ("ai", "are", "is", "was", "were", "have", "has", "dare"):
        for orth in (verb, verb.title()):
            add(orth, "n't"); add(orth, "nt")
    for word in ("doin", "goin", "nothin", "nuthin", "ol", "somethin"):
        for orth in (word, word.title()):
            add(orth); add(orth + "'")
    for word in ("em", "ll", "nuff"):
        add(word); add("'" + word)
    for h in range(1, 13):
        for period in ("a.m.", "am", "p.m.", "pm"):
            add(str(h), period)
    add("y'", "all"); add("y", "all")
    for orth in ("how", "How"):
        add(orth, "'d", "'y")
    for orth in ("not", "Not"):
        add(orth, "'ve"); add(orth, "ve")
    for a, b in (("can", "not"), ("Can", "not"), ("gon", "na"), ("Gon", "na"), ("got", "ta"),
                 ("Got", "ta"), ("let", "'s"), ("Let", "'s"), ("c'm", "on"), ("C'm", "on")):
        add(a, b)
    for orth in ("'S", "'s", "\u2018S", "\u2018s", "and/or", "w/o", "'re", "'Cause", "'cause", "'cos",
                 "'Cos", "'coz", "'Coz", "'cuz", "'Cuz", "'bout", "ma'am", "Ma'am", "o'clock",
                 "O'clock", "lovin'", "Lovin'", "lovin", "Lovin", "havin'", "Havin'", "havin", "Havin",
                 "doin'", "Doin'", "doin", "Doin", "goin'", "Goin'", "goin", "Goin", "Mt.", "Ak.",
                 "Ala.", "Apr.", "Ariz.", "Ark.", "Aug.", "Calif.", "Colo.", "Conn.", "Dec.", "Del.",
                 "Feb.", "Fla.", "Ga.", "Ia.", "Id.", "Ill.", "Ind.", "Jan.", "Jul.", "Jun.", "Kan.",
                 "Kans.", "Ky.", "La.", "Mar.", "Mass.", "Mich.", "Minn.", "Miss.", "N.C.", "N.D.",
                 "N.H.", "N.J.", "N.M.", "N.Y.", "Neb.", "Nebr.", "Nev.", "Nov.", "Oct.", "Okla.",
                 "Ore.", "Pa.", "S.C.", "Sep.", "Sept.", "Tenn.", "Va.", "Wash.", "Wis.",
                 "'d", "a.m.", "Adm.", "Bros.", "co.", "Co.", "Corp.", "D.C.", "Dr.", "e.g.", "E.g.",
                 "E.G.", "Gen.", "Gov.", "i.e.", "I.e.", "I.E.", "Inc.", "Jr.", "Ltd.", "Md.",
                 "Messrs.", "Mo.", "Mont.", "Mr.", "Mrs.", "Ms.", "p.m.", "Ph.D.", "Prof.", "Rep.",
                 "Rev.", "Sen.", "St.", "vs.", "v.s."):
        add(orth)
    for unit in "CFKcfk":
        add("°", unit, ".")
    for s in list(exclude):
        exc.pop(s, None)
    # Every entry with an ASCII apostrophe also exists with the typographic one (U+2019).
    for key, parts in list(exc.items()):
        if "'" in key:
            exc[key.replace("'", "\u2019")] = tuple(p.replace("'", "\u2019") for p in parts)
    # Base (language-independent) exceptions: whitespace, single letters with a period,
    # emoticons. Each is one token.
    base = ["\t", "\\t", "\n", "\\n", "\u2014", "\u00a0", " ", "<space>", "''", "'", '\\")',
            "\u2019", "\u2019\u2019", "C++", "a.", "b.", "c.", "d.", "e.", "f.", "g.", "h.", "i.",
            "j.", "k.", "l.", "m.", "n.", "o.", "p.", "q.", "r.", "s.", "t.", "u.", "v.", "w.", "x.",
            "y.", "z.", "ä.", "ö.", "ü."]
    base += """
:) :-) :)) :-)) :))) :-))) (: (-: =) (= :] :-] [: [-: [= =] :o) (o: :} :-} 8) 8-) (-8
;) ;-) (; (-; :( :-( :(( :-(( :((( :-((( ): )-: =( >:( :') :'-) :'( :'-( :/ :-/ =/ =| :| :-|
]= =[ :1 :P :-P :p :-p :O :-O :o :-o :0 :-0 :() >:o :* :-* :3 :-3 =3 :> :-> :X :-X :x :-x
:D :-D ;D ;-D =D xD XD xDD XDD 8D 8-D ^_^ ^__^ ^___^ >.< >.> <.< ._. ;_; -_- -__- v.v V.V v_v
V_V o_o o_O O_o O_O 0_o o_0 0_0 o.O O.o O.O o.o 0.0 o.0 0.o @_@ <3 <33 <333 </3 (^_^) (-_-)
(._.) (>_<) (*_*) (¬_¬) ಠ_ಠ ಠ︵ಠ (ಠ_ಠ) ¯\\(ツ)/¯ (╯°□°）╯︵┻━┻ ><(((*> :’) :’-) :’( :’-(
""".split()
    for orth in base:
        exc[orth] = (orth,)
    return exc


class _SpacyEnglishTokenizer:
    """spaCy's ``Tokenizer`` algorithm with the English rules (see the module docstring)."""

    def __init__(self):
        cls = _unicode_classes()
        al, au, a, icons = cls["alpha_lower"], cls["alpha_upper"], cls["alpha"], cls["icons"]
        list_icons = [f"[{icons}]"]
        list_ellipses = [r"\.\.+", "…"]
        concat_quotes = _group_chars(_QUOTES)
        prefixes = (["§", "%", "=", "—", "–", r"\+(?![0-9])"] + _split_chars(_PUNCT) + list_ellipses
                    + _split_chars(_QUOTES) + _split_chars(_CURRENCY) + list_icons)
        suffixes = (_split_chars(_PUNCT) + list_ellipses + _split_chars(_QUOTES) + list_icons
                    + ["'s", "'S", "’s", "’S", "—", "–"]
                    + [r"(?<=[0-9])\+",
                       r"(?<=°[FfCcKk])\.",
                       r"(?<=[0-9])(?:{c})".format(c=_merge_chars(_CURRENCY)),
                       r"(?<=[0-9])(?:{u})".format(u=_merge_chars(_UNITS)),
                       r"(?<=[0-9{al}{e}{p}(?:{q})])\.".format(al=al, e=r"%²\-\+", q=concat_quotes,
                                                             p=_merge_chars(_PUNCT)),
                       r"(?<=[{au}][{au}])\.".format(au=au)])
        infixes = (list_ellipses + list_icons
                   + [r"(?<=[0-9])[+\-\*^](?=[0-9-])",
                      r"(?<=[{al}{q}])\.(?=[{au}{q}])".format(al=al, au=au, q=concat_quotes),
                      r"(?<=[{a}]),(?=[{a}])".format(a=a),
                      r"(?<=[{a}0-9])(?:{h})(?=[{a}])".format(a=a, h=_merge_chars(_HYPHENS)),
                      r"(?<=[{a}0-9])[:<>=/](?=[{a}])".format(a=a)])
        self._prefix = re.compile("|".join("^" + p for p in prefixes if p.strip())).search
        self._suffix = re.compile("|".join(p + "$" for p in suffixes if p.strip())).search
        self._infix = re.compile("|".join(p for p in infixes if p.strip())).finditer
        self._url = re.compile(_url_pattern(al)).match
        self.rules = _english_exceptions()
        # Special cases the final matcher pass re-applies: those containing an affix, an
        # infix or a space (spaCy's ``faster_heuristics``), keyed by their tokenization
        # without special cases.
        self._matcher: dict[tuple[str, ...], str] = {}
        for string in sorted(self.rules):
            if (self._find_prefix(string) or self._find_suffix(string)
                    or list(self._infix(string)) or " " in string):
                pattern = tuple(t for t, _ in self._tokenize_affixes(string, False))
                self._matcher[pattern] = string  # later (sorted) strings replace earlier ones
        self._matcher_lengths = sorted({len(p) for p in self._matcher})
        self._cache: dict[str, tuple[str, ...]] = {}

    def _find_prefix(self, s: str) -> int:
        m = self._prefix(s)
        return m.end() - m.start() if m else 0

    def _find_suffix(self, s: str) -> int:
        m = self._suffix(s)
        return m.end() - m.start() if m else 0

    def __call__(self, text: str) -> list[str]:
        tokens = self._tokenize_affixes(text, True)
        if self._matcher:
            tokens = self._apply_special_cases(tokens)
        return [t for t, _ in tokens]

    # -- spacy/tokenizer.pyx: Tokenizer._tokenize_affixes ---------------------------------
    def _tokenize_affixes(self, string: str, specials: bool) -> list[list]:
        """``[[text, followed_by_space], ...]``."""
        doc: list[list] = []
        if not string:
            return doc
        in_ws = string[0].isspace()
        start = 0
        for i, uc in enumerate(string):
            if uc.isspace() != in_ws:
                if start < i:
                    self._tokenize_span(doc, string[start:i], specials)
                if uc == " ":
                    doc[-1][1] = True
                    start = i + 1
                else:
                    start = i
                in_ws = not in_ws
        if start < len(string):
            self._tokenize_span(doc, string[start:], specials)
            doc[-1][1] = string[-1] == " " and not in_ws
        return doc

    def _tokenize_span(self, doc: list, span: str, specials: bool) -> None:
        if specials and span in self.rules:
            doc.extend([t, False] for t in self.rules[span])
            return
        if specials:
            cached = self._cache.get(span)
            if cached is None:
                cached = self._split_span(span, True)
                if len(self._cache) < 100_000:
                    self._cache[span] = cached
        else:
            cached = self._split_span(span, False)
        doc.extend([t, False] for t in cached)

    def _split_span(self, string: str, specials: bool) -> tuple[str, ...]:
        # Tokenizer._split_affixes
        rules = self.rules
        prefixes: list[str] = []
        suffixes: list[str] = []
        last_size = -1
        while string and len(string) != last_size:
            if specials and string in rules:
                break
            last_size = len(string)
            pre_len = self._find_prefix(string)
            if pre_len:
                prefix, minus_pre = string[:pre_len], string[pre_len:]
                if minus_pre and specials and minus_pre in rules:
                    string = minus_pre
                    prefixes.append(prefix)
                    break
            suf_len = self._find_suffix(string[pre_len:])
            if suf_len:
                suffix, minus_suf = string[-suf_len:], string[:-suf_len]
                if minus_suf and specials and minus_suf in rules:
                    string = minus_suf
                    suffixes.append(suffix)
                    break
            if pre_len and suf_len and pre_len + suf_len <= len(string):
                string = string[pre_len:-suf_len]
                prefixes.append(prefix)
                suffixes.append(suffix)
            elif pre_len:
                string = minus_pre
                prefixes.append(prefix)
            elif suf_len:
                string = minus_suf
                suffixes.append(suffix)
        # Tokenizer._attach_tokens
        out = list(prefixes)
        if string:
            if specials and string in rules:
                out.extend(rules[string])
            elif self._url(string):
                out.append(string)
            else:
                start = 0
                for m in self._infix(string):
                    if m.start() == 0:
                        continue
                    if m.start() != start:
                        out.append(string[start:m.start()])
                    if m.start() != m.end():
                        out.append(string[m.start():m.end()])
                    start = m.end()
                if string[start:]:
                    out.append(string[start:])
        out.extend(reversed(suffixes))
        return tuple(out)

    # -- Tokenizer._apply_special_cases (the PhraseMatcher pass) --------------------------
    def _apply_special_cases(self, doc: list[list]) -> list[list]:
        texts = [t for t, _ in doc]
        matches = []  # (start, end)
        for n in self._matcher_lengths:
            for i in range(len(texts) - n + 1):
                if tuple(texts[i:i + n]) in self._matcher:
                    matches.append((i, i + n))
        if not matches:
            return doc
        # _filter_special_spans: longest first, then leftmost; skip spans touching seen tokens.
        matches.sort(key=lambda m: (m[1] - m[0], -m[0]))
        seen: set[int] = set()
        kept = []
        for start, end in reversed(matches):
            if start not in seen and end - 1 not in seen:
                kept.append((start, end))
            seen.update(range(start, end))
        replace = {}
        for start, end in kept:
            text = "".join(t + (" " if sp else "") for t, sp in doc[start:end - 1]) + doc[end - 1][0]
            if text in self.rules:  # a match spanning whitespace has no rule: left unchanged
                replace[start] = (end, self.rules[text])
        if not replace:
            return doc
        out, i = [], 0
        while i < len(doc):
            if i in replace:
                end, parts = replace[i]
                out.extend([p, False] for p in parts)
                out[-1][1] = doc[end - 1][1]
                i = end
            else:
                out.append(doc[i])
                i += 1
        return out


@functools.lru_cache(maxsize=1)
def _python_tokenizer() -> _SpacyEnglishTokenizer:
    return _SpacyEnglishTokenizer()


def spacy_tokenize(text: str) -> list[str]:
    """spaCy English tokenization of ``text`` (token texts, case kept), pure Python."""
    return _python_tokenizer()(text)


@functools.lru_cache(maxsize=1)
def _reference_tokenizer():
    try:
        import spacy  # noqa: F401  (optional; not a dependency)
    except ImportError as e:
        raise ImportError("spacy_backend='spacy' needs spaCy, which is not installed: "
                          "`pip install spacy` (or use spacy_backend='python', the built-in port)") from e
    return spacy.blank("en").tokenizer


def spacy_reference_tokenize(text: str) -> list[str]:
    """Token texts from the real ``spacy.blank("en")`` tokenizer (spaCy must be installed)."""
    return [t.text for t in _reference_tokenizer()(text)]


SPACY_BACKENDS = ("python", "spacy")


def spacy_tokenizer(backend: str = "python") -> Callable[[str], list[str]]:
    """The spaCy-English tokenizer function for ``backend``: "python" (default) or "spacy"."""
    if backend == "python":
        return spacy_tokenize
    if backend == "spacy":
        _reference_tokenizer()  # fail now, with the install hint, if spaCy is missing
        return spacy_reference_tokenize
    raise ValueError(f"unknown spacy_backend {backend!r}; valid choices: {SPACY_BACKENDS}")


def spacy_available() -> bool:
    """Whether the optional spaCy package is installed (checked without importing it)."""
    import importlib.util
    return importlib.util.find_spec("spacy") is not None


def contains_digit(token: str) -> bool:
    """The original's test for replacing a token by ``[DIGITS]``: ``any(c.isdigit() for c in token)``."""
    return any(c.isdigit() for c in token)


DIGITS_TOKEN = "[DIGITS]"


def replace_digits(tokens: list[str]) -> list[str]:
    return [DIGITS_TOKEN if contains_digit(t) else t for t in tokens]


__all__ = ["keras_tokenize", "spacy_tokenize", "spacy_reference_tokenize", "spacy_tokenizer",
           "spacy_available", "replace_digits", "contains_digit", "DIGITS_TOKEN", "KERAS_FILTERS",
           "SPACY_BACKENDS"]
