"""A generated, tweet-like sentiment dataset for demos and tests that need no download.

Nothing here is real data: every text is assembled from the word lists below by a seeded
random generator. It imitates what makes real tweets hard: @mentions, #hashtags, URLs,
emoticons, elongations ("sooo"), typos, negations ("not happy"), mixed feelings, neutral
chatter, a little label noise and a few exact duplicates (retweets).
"""

from __future__ import annotations

import random
from typing import Literal, NamedTuple

import pandas as pd

__all__ = ["generate_tweets"]

_POSITIVE = [
    "love this",
    "so happy",
    "best day ever",
    "this is amazing",
    "feeling great",
    "can't wait",
    "really enjoyed it",
    "what a beautiful morning",
    "so excited",
    "thank you so much",
    "made my day",
    "absolutely fantastic",
    "had a blast",
    "proud of you",
    "so much fun",
    "looks awesome",
    "good vibes",
    "finally got it",
    "such a lovely evening",
    "works perfectly",
    "highly recommend",
    "best news",
    "feeling blessed",
    "totally worth it",
    "you rock",
    "smiling all day",
    "great job",
    "loving the new",
    "wonderful people",
    "cheers to that",
    "nailed it",
    "couldn't be happier",
    "a dream come true",
    "brilliant",
    "yay",
    "so grateful",
    "the best",
    "awesome weekend",
    "happy birthday",
    "nice one",
]
_NEGATIVE = [
    "hate this",
    "so sad",
    "worst day ever",
    "this is awful",
    "feeling sick",
    "can't sleep",
    "really disappointed",
    "what a horrible morning",
    "so tired",
    "this sucks",
    "ruined my day",
    "absolutely terrible",
    "had a nightmare",
    "miss you",
    "so boring",
    "looks broken",
    "bad vibes",
    "lost it again",
    "such a long night",
    "stopped working",
    "never again",
    "bad news",
    "feeling awful",
    "total waste",
    "so annoyed",
    "crying all day",
    "epic fail",
    "stuck in",
    "rude people",
    "ugh",
    "can't believe they cancelled",
    "could not be worse",
    "a total nightmare",
    "painful",
    "boo",
    "so stressed",
    "the worst",
    "awful weekend",
    "my head hurts",
    "gutted",
]
_TOPICS = [
    "the new phone",
    "work",
    "the game",
    "my coffee",
    "monday",
    "the traffic",
    "my sister",
    "the concert",
    "homework",
    "the weather",
    "this song",
    "the movie",
    "my laptop",
    "the bus",
    "dinner",
    "the beach",
    "my exam",
    "the update",
    "lunch",
    "the weekend",
    "my flight",
    "the gym",
    "the new episode",
    "my dog",
    "the party",
    "the meeting",
    "my car",
    "this book",
    "the match",
    "school",
    "the store",
    "my team",
]
_FILLER = [
    "just got home",
    "anyway",
    "at the office",
    "on my way",
    "right now",
    "today",
    "this morning",
    "tonight",
    "again",
    "lol",
    "haha",
    "omg",
    "btw",
    "for real",
    "honestly",
    "no idea why",
    "waiting for the train",
    "back later",
    "brb",
    "eating pizza",
    "with friends",
    "all week",
    "idk",
    "tbh",
    "so yeah",
]
_NAMES = [
    "alex",
    "sam_k",
    "jordan22",
    "mia_m",
    "chris",
    "taylor",
    "lee_j",
    "robin",
    "dana",
    "kimmy",
    "pat_r",
    "nico",
    "jess",
    "max",
    "ola",
    "ravi",
]
_TAGS_NEUTRAL = ["#monday", "#music", "#work", "#travel", "#food", "#tech", "#news", "#life"]
_TAGS_POSITIVE = ["#blessed", "#happy", "#love", "#win", "#goodtimes"]
_TAGS_NEGATIVE = ["#fail", "#sad", "#ugh", "#mondays", "#worst"]
_SMILES = [":)", ":-)", ":D", "=)", ";)", "<3"]
_FROWNS = [":(", ":-(", ":'(", "=(", ":/"]
_NEGATABLE = ["happy", "great", "good", "fun", "impressed", "a fan", "excited"]

# A later "period": new slang, new topics, and old praise used sarcastically. A model
# trained on the early period meets drifted inputs (unknown words) and a changed
# word-to-label relation (concept drift) here.
_LATE_POSITIVE = [
    "this slaps",
    "no cap this is fire",
    "lowkey obsessed",
    "goated",
    "bussin",
    "hits different",
    "vibes are immaculate",
    "main character energy",
    "huge w",
    "sick",
    "unreal",
    "ate and left no crumbs",
    "living for this",
    "chef's kiss",
]
_LATE_NEGATIVE = [
    "mid",
    "took an l",
    "it's giving nothing",
    "straight trash",
    "not it",
    "cringe",
    "big yikes",
    "flop era",
    "dead inside",
    "love that for me",
    "great. just great",
    "so fun being ignored",
    "what a time to be alive",
    "ratio",
]
_LATE_TOPICS = [
    "the new ai app",
    "my smartwatch",
    "the streaming show",
    "the drop",
    "the collab",
    "the group chat",
    "the livestream",
    "my playlist",
    "the patch notes",
    "the tour",
    "the algorithm",
    "my feed",
    "the subscription",
    "the sequel",
]


class _Vocabulary(NamedTuple):
    positive: list[str]
    negative: list[str]
    topics: list[str]


def _vocabulary(period: str) -> _Vocabulary:
    if period == "early":
        return _Vocabulary(_POSITIVE, _NEGATIVE, _TOPICS)
    # The late period keeps some old phrases: drift is gradual, not a different language.
    return _Vocabulary(
        _LATE_POSITIVE * 3 + _POSITIVE[:8],
        _LATE_NEGATIVE * 3 + _NEGATIVE[:8],
        _LATE_TOPICS * 2 + _TOPICS[:6],
    )


_SEPARATORS = [" ", " ", " ", ", ", ". ", " - ", "... "]

_LABEL_NOISE = 0.05
_DUPLICATES = 0.01


def generate_tweets(
    n: int = 4000, seed: int = 0, period: Literal["early", "late"] = "early"
) -> pd.DataFrame:
    """Generate ``n`` synthetic tweet-like texts with ``positive``/``negative`` labels.

    This is clearly generated data, not real tweets. It is deterministic for a given
    ``seed`` and roughly balanced. About 5% of labels are flipped on purpose and about 1%
    of rows are exact duplicates of others, so a TF-IDF + logistic regression model lands
    near 0.9 accuracy rather than 1.0. ``period="late"`` draws from newer slang, topics
    and sarcasm: a drifted stream for monitoring demos. Returns columns ``text, label``.
    """
    rng = random.Random(seed)
    vocab = _vocabulary(period)
    texts: list[str] = []
    labels: list[str] = []
    for _ in range(n):
        label = "positive" if rng.random() < 0.5 else "negative"
        texts.append(_tweet(rng, label, vocab))
        # Label noise: annotators (or emoticons) get some rows wrong.
        if rng.random() < _LABEL_NOISE:
            label = "negative" if label == "positive" else "positive"
        labels.append(label)
    for i in rng.sample(range(n), k=int(n * _DUPLICATES)) if n > 1 else []:
        j = rng.randrange(n)  # a retweet: the same text with the same label
        texts[i], labels[i] = texts[j], labels[j]
    return pd.DataFrame(
        {"text": pd.array(texts, dtype="str"), "label": pd.array(labels, dtype="str")}
    )


def _tweet(rng: random.Random, label: str, vocab: _Vocabulary) -> str:
    """One tweet for ``label``: a sentiment core plus the noise real tweets carry."""
    kind = rng.random()
    if kind < 0.84:
        parts = _clear(rng, label, vocab)
    elif kind < 0.94:
        parts = _mixed(rng, label, vocab)
    else:
        parts = _neutral(rng, vocab)
    words = parts[0]
    for part in parts[1:]:
        words += rng.choice(_SEPARATORS) + part
    words = _decorate(rng, words, label)
    return words.upper() if rng.random() < 0.03 else words


def _own(label: str, vocab: _Vocabulary) -> list[str]:
    return vocab.positive if label == "positive" else vocab.negative


def _other(label: str, vocab: _Vocabulary) -> list[str]:
    return vocab.negative if label == "positive" else vocab.positive


def _clear(rng: random.Random, label: str, vocab: _Vocabulary) -> list[str]:
    topic = rng.choice(vocab.topics)
    if label == "negative" and rng.random() < 0.15:
        # Negation: positive words in a negative tweet.
        parts = [f"not {rng.choice(_NEGATABLE)} with {topic}"]
    else:
        parts = [rng.choice(_own(label, vocab))]
        parts.insert(rng.randrange(2), topic)
    if rng.random() < 0.3:
        parts.append(rng.choice(_own(label, vocab)))
    for _ in range(rng.randrange(3)):
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(_FILLER))
    return parts


def _mixed(rng: random.Random, label: str, vocab: _Vocabulary) -> list[str]:
    # Mixed feelings: the tweet's own sentiment, then a contrasting aside.
    return [
        rng.choice(vocab.topics),
        rng.choice(_own(label, vocab)),
        rng.choice(["but", "although", "even if", "still"]),
        rng.choice(_other(label, vocab)),
    ]


def _neutral(rng: random.Random, vocab: _Vocabulary) -> list[str]:
    # No sentiment words at all: the label is effectively a coin flip.
    return [rng.choice(_FILLER), rng.choice(vocab.topics), rng.choice(_FILLER)]


def _decorate(rng: random.Random, text: str, label: str) -> str:
    if rng.random() < 0.15:
        text = _elongate(rng, text)
    if rng.random() < 0.10:
        text = _typo(rng, text)
    if rng.random() < 0.40:
        text = f"@{rng.choice(_NAMES)} {text}"
    if rng.random() < 0.20:
        smile = rng.random() < (0.85 if label == "positive" else 0.15)
        text = f"{text} {rng.choice(_SMILES if smile else _FROWNS)}"
    if rng.random() < 0.30:
        tags = rng.choice(
            [_TAGS_NEUTRAL, _TAGS_POSITIVE if label == "positive" else _TAGS_NEGATIVE]
        )
        text = f"{text} {rng.choice(tags)}"
    if rng.random() < 0.15:
        text = f"{text} http://t.co/{rng.getrandbits(32):08x}"
    if rng.random() < 0.2:
        text = text + rng.choice(["!", "!!", "!!!", "...", "?", "."])
    return text


def _elongate(rng: random.Random, text: str) -> str:
    """Stretch one vowel: "so" -> "sooo", "good" -> "goooood"."""
    vowels = [i for i, ch in enumerate(text) if ch in "aeiouy"]
    if not vowels:
        return text
    i = rng.choice(vowels)
    return text[: i + 1] + text[i] * rng.randrange(2, 6) + text[i + 1 :]


def _typo(rng: random.Random, text: str) -> str:
    """Drop or swap one letter, as fast thumbs do."""
    letters = [i for i in range(len(text) - 1) if text[i].isalpha() and text[i + 1].isalpha()]
    if not letters:
        return text
    i = rng.choice(letters)
    if rng.random() < 0.5:
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
