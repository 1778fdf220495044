"""Facts about written Tatar that several stages use: its letters and its vowel harmony.

- `TATAR_LETTERS`, `tatar_letter_share`: the six letters Tatar adds to the Russian alphabet
  (ә ө ү җ ң һ). Russian text has none of them; natural Tatar uses one in roughly every
  tenth to fifteenth letter, so their share tells Tatar from Russian or Bashkir-free noise.
- `suffix_harmony`, `flip_suffix`: the vowel of a plural or case suffix agrees with the last
  vowel of the stem — back stems (а о у ы) take -лар, -да, -дан, -га, -ны, -ның; front stems
  (ә ө ү э и е) take -ләр, -дә, -дән, -гә, -не, -нең. `04_evaluate.py` builds vowel-harmony
  minimal pairs with `flip_suffix`; the corpus checks measure how often the rule holds.

The rule is the simple one a first-year student learns. Real Tatar breaks it in loanwords
(университетта, тарихы), so natural text keeps it in about 86–96 % of the words it can check,
while random suffixes would keep it in about half. Letters whose vowel quality the spelling
does not show (я, ю, ё; е at the start of a word, as in ел [jɯl] "year") make a stem
uncheckable rather than guessed; a final soft sign marks a front stem (сәгатькә, кәгазьне).
"""

from __future__ import annotations

import random
import re

TATAR_LETTERS = "әөүҗңһ"
BACK_VOWELS = "аоуы"
FRONT_VOWELS = "әөүэие"
VOWELS = BACK_VOWELS + FRONT_VOWELS + "яюё"

# Final suffixes checked, longest first: (back form, front form).
SUFFIXES = (
    ("ның", "нең"),  # genitive
    ("лар", "ләр"), ("нар", "нәр"),  # plural
    ("дан", "дән"), ("тан", "тән"), ("нан", "нән"),  # ablative
    ("да", "дә"), ("та", "тә"),  # locative
    ("га", "гә"), ("ка", "кә"),  # dative
    ("ны", "не"),  # accusative
)
_SUFFIX_FORMS = sorted(((form, back, front) for back, front in SUFFIXES for form in (back, front)),
                       key=lambda s: -len(s[0]))
WORD = re.compile(r"[А-Яа-яЁёӘәӨөҮүҖҗҢңҺһ]+(?:-[А-Яа-яЁёӘәӨөҮүҖҗҢңҺһ]+)*")


def letter_counts(text: str) -> tuple[int, int, int]:
    """(letters, Cyrillic letters, ә ө ү җ ң һ) in `text`, any case."""
    letters = [c for c in text.lower() if c.isalpha()]
    cyrillic = sum(1 for c in letters if "а" <= c <= "я" or c in "ё" + TATAR_LETTERS)
    return len(letters), cyrillic, sum(1 for c in letters if c in TATAR_LETTERS)


def tatar_letter_share(text: str) -> float:
    """Share of the Cyrillic letters of `text` that are ә ө ү җ ң һ (0 when it has none)."""
    _, cyrillic, tatar = letter_counts(text)
    return tatar / cyrillic if cyrillic else 0.0


def words(sentence: str) -> list[str]:
    """The Cyrillic words of a sentence (hyphenated compounds kept whole)."""
    return WORD.findall(sentence)


def stem_harmony(stem: str) -> str | None:
    """'back' or 'front' from the last vowel of `stem`; None when the spelling does not show it."""
    s = stem.lower()
    if s.endswith("ь"):  # a soft sign after the last consonant marks a front word: сәгать-кә
        return "front" if any(c in VOWELS for c in s) else None
    for i in range(len(s) - 1, -1, -1):
        c = s[i]
        if c in BACK_VOWELS:
            return "back"
        if c == "е":
            return "front" if i > 0 and s[i - 1] not in VOWELS + "ьъ" else None
        if c in FRONT_VOWELS:
            return "front"
        if c in "яюё":
            return None
    return None


def split_suffix(word: str) -> tuple[str, str, str, str] | None:
    """(stem, suffix, back form, front form) of a word ending in a checked suffix, else None.

    The stem must keep a vowel whose harmony the spelling shows, so that «да» (the particle)
    or «ел» + «дан» (a stem with only word-initial е) are not checked.
    """
    lower = word.lower()
    for form, back, front in _SUFFIX_FORMS:
        if lower.endswith(form) and len(lower) > len(form):
            stem = word[: -len(form)]
            if stem_harmony(stem) is not None:
                return stem, word[-len(form):], back, front
            return None
    return None


def suffix_harmony(word: str) -> bool | None:
    """True when the word's case/plural suffix agrees with its stem, False when it does not,
    None when the word has no checked suffix or its stem's harmony is not written."""
    parts = split_suffix(word)
    if parts is None:
        return None
    stem, suffix, back, _ = parts
    return (suffix.lower() == back) == (stem_harmony(stem) == "back")


def flip_suffix(word: str) -> str | None:
    """The word with its final suffix in the other harmony: китапларда → китаплардә,
    өйләрне → өйләрны. None for a word without a checked suffix, or whose suffix already
    breaks the rule: a minimal pair needs a grammatical original.
    """
    parts = split_suffix(word)
    if parts is None or not suffix_harmony(word):
        return None
    stem, suffix, back, front = parts
    other = front if suffix.lower() == back else back
    if suffix[0].isupper():  # an all-capitals word keeps its capitals
        other = other.upper()
    return stem + other


# Signs of Russian in a sentence without Tatar letters: frequent function words, and
# adjective, verb and case endings that Tatar words do not have.
RUSSIAN_WORDS = frozenset(
    "в во на не что с со по это как для от из к ко у о об он она оно они мы вы был была "
    "было были есть его её ее их но за при до же бы ли или чтобы если когда только уже "
    "очень всё все весь этот эта эти тот та те который которая которые также где там".split()
)
RUSSIAN_ENDING = re.compile(r"(?:ий|ой|ая|яя|ое|ее|ые|ие|ого|его|ому|ему|ться|тся|ешь|ишь)$")


def looks_russian(sentence: str) -> bool:
    """True for a sentence that has no Tatar letter and reads as Russian.

    Tatar and Russian share the alphabet, so a Tatar sentence may lack ә ө ү җ ң һ by chance;
    it is called Russian only when at least a third of its words (and at least one) are
    Russian function words or carry Russian endings.
    """
    if any(c in sentence.lower() for c in TATAR_LETTERS):
        return False
    ws = [w.lower() for w in words(sentence)]
    if not ws:
        return False
    signals = sum(1 for w in ws if w in RUSSIAN_WORDS or RUSSIAN_ENDING.search(w))
    return signals >= max(1, len(ws) / 3)


def minimal_pairs(sentences: list[str], max_pairs: int = 1000,
                  seed: int = 0) -> list[tuple[str, str, str, str]]:
    """Vowel-harmony minimal pairs: (sentence, the same sentence with one suffix flipped
    against the stem's harmony, the word, the flipped word).

    One pair per sentence at most, the word chosen at random among those whose suffix can
    be flipped; the sentences are taken in order until `max_pairs`. A model that knows the
    harmony rule gives the original the higher probability (the idea of BLiMP's minimal
    pairs, built from any Tatar text).
    """
    rng = random.Random(seed)
    pairs = []
    for sentence in sentences:
        spans = [(m.start(), m.end()) for m in WORD.finditer(sentence)
                 if flip_suffix(m.group()) is not None]
        if not spans:
            continue
        start, end = rng.choice(spans)
        word = sentence[start:end]
        flipped = flip_suffix(word)
        pairs.append((sentence, sentence[:start] + flipped + sentence[end:], word, flipped))
        if len(pairs) >= max_pairs:
            break
    return pairs
