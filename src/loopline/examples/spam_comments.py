"""Generated YouTube comments in the format of the UCI YouTube Spam Collection.

Nothing here is real data: every comment, author, id and date is assembled from the word
lists below by a seeded random generator, and the artists and songs are invented. The
files have the real collection's layout (``Youtube01-Psy.csv`` ... ``Youtube05-Shakira.csv``):
UTF-8 CSV with a header, LF line endings and the columns ``COMMENT_ID, AUTHOR, DATE, CONTENT,
CLASS`` (``1`` = spam, ``0`` = ham), so a pipeline written for the real files runs unchanged
on these.

The texts imitate what makes the real comments interesting to classify: ham is opinions about
the song and the video, "who is watching in 2015?", view counts, emojis and a bare "lol";
spam is "check out my channel", "subscribe", links with and without a scheme (or spelled
"site . com"), free gift cards, "like this comment if ...", and a lot of "please". The classes
overlap: some ham links to a lyrics site or tells spammers off ("nobody will check your
channel"), and some spam has no link and starts with praise for the song. Like the real
files, the comments carry HTML (``<br />``, ``&#39;``, ``&quot;``, links as ``<a href>``),
many end in a stray U+FEFF, one file has no DATE for its spam rows (as the real Eminem file),
some spammers post the same text several times, and about 3% of the labels are wrong.
"""

from __future__ import annotations

import random
import string
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple, TypedDict, Unpack

import pandas as pd

__all__ = ["COLUMNS", "generate_comments", "write_comments"]

COLUMNS = ["COMMENT_ID", "AUTHOR", "DATE", "CONTENT", "CLASS"]

_LABEL_NOISE = 0.03
_REPOSTS = 0.12  # share of spam rows that repeat an earlier spam of the same author


class _Video(NamedTuple):
    artist: str
    song: str
    genre: str


# Invented artists and songs, one per file (cycled when more videos are asked for).
_VIDEOS = [
    _Video("Kid Marlow", "Neon Summer", "pop"),
    _Video("Dana Vee", "Paper Crown", "pop"),
    _Video("The Lanterns", "Party All Night", "party"),
    _Video("MC Granite", "Broken Mirror", "rap"),
    _Video("Lucia Sol", "Hips On Fire", "latin"),
]


class _Style(NamedTuple):
    """How one file of the real collection looks (dates, order, HTML, U+FEFF)."""

    microseconds: bool  # 2015-05-29T02:26:10.652000 rather than 2013-11-07T06:20:48
    newest_first: bool
    html: bool  # &#39; &quot; <br /> <a href=...>
    bom: float  # share of CONTENT values ending in U+FEFF
    spam_without_date: bool  # the Eminem file: DATE is empty exactly on its spam rows
    first_day: str
    last_day: str


_STYLES = [
    _Style(False, False, False, 0.97, False, "2013-11-07", "2015-06-05"),
    _Style(False, False, False, 1.0, False, "2014-07-22", "2015-06-05"),
    _Style(True, True, True, 1.0, False, "2014-07-21", "2015-05-28"),
    _Style(True, True, True, 0.57, True, "2015-01-10", "2015-05-29"),
    _Style(True, True, True, 0.45, False, "2013-07-12", "2015-05-29"),
]

_FIRST_NAMES = [
    "Julia", "Marco", "Ahmed", "Sofia", "Liam", "Chloe", "Diego", "Hannah", "Tyler", "Aisha",
    "Lukas", "Emma", "Kevin", "Priya", "Mateo", "Zoe", "Ivan", "Nina", "Jamal", "Sara",
    "Tom", "Lena", "Oscar", "Mia", "Ryan", "Ana", "Victor", "Jade", "Omar", "Elif",
    "Brandon", "Yuki", "Carlos", "Maya", "Dylan", "Fatima", "Josh", "Ines", "Pedro", "Kim",
]  # fmt: skip
_LAST_NAMES = [
    "Silva", "Novak", "Brown", "Garcia", "Kowalski", "Nguyen", "Smith", "Rossi", "Haddad",
    "Jensen", "Lopez", "Moreau", "Khan", "Ivanova", "Okafor", "Meyer", "Santos", "Baker",
    "Tanaka", "Costa", "Walker", "Popescu", "Diaz", "Fischer", "Reyes", "Young", "Ali",
]  # fmt: skip
_HANDLE_PARTS = [
    "Mega", "Beats", "Gamer", "Official", "TV", "Vlogs", "Music", "Studio", "Prod", "King",
    "Queen", "Dark", "Pixel", "Ninja", "Shadow", "Flow", "Lyric", "Star", "Nova", "Rider",
    "Wolf", "Crew", "Films", "Daily", "Zone", "Tube", "Hits", "Fire", "Ghost", "Craft",
]  # fmt: skip

_EMOJI = ["😍", "❤", "😂", "🔥", "👍", "💕", "😎", "🎶", "💃", "😭", "♥", "☺", "👌", "🙌"]
_YEARS_AGO = ["2 years", "3 years", "like 5 years", "forever", "ages"]
_SOURCES = [
    "the radio", "a tv ad", "my little sister", "the world cup", "a dance class", "netflix",
    "a party last night", "my gym", "the supermarket", "a random playlist", "facebook",
    "the news", "a school trip", "my ex", "a wedding",
]  # fmt: skip
_MEMORIES = [
    "my childhood", "high school", "summer", "my first car", "my ex", "road trips",
    "my best friend", "the good old days", "my grandma", "winter break", "my wedding",
]  # fmt: skip
_RELATIVES = ["little brother", "mom", "dad", "grandma", "baby sister", "cousin", "son", "daughter"]
_CITIES = ["Madrid", "Chicago", "Lisbon", "Warsaw", "Manila", "Toronto", "Cairo", "Lima", "Oslo"]
_FOREIGN_HAM = [
    "que buena canción", "muito bom", "me encanta esta canción", "la mejor canción",
    "trop bien", "super lied", "bellissima", "çok güzel", "hermosa", "te amo {artist}",
]  # fmt: skip
_SHORT_HAM = [
    "lol", "LOL", "lmao", "haha", "hahaha", "omg", "wow", "nice", "so good", "yes",
    "love it", "best song", "epic", "classic", "legend", "10/10", "beautiful", "cool",
    "mmm", "who else?", "same", "oh yeah", "catchy", "ok", "{artist}!!!", "♥♥♥",
]  # fmt: skip

_HAM = [
    "{song} never gets old",
    "I love this song so much {emoji}",
    "best song ever",
    "{artist} is a legend",
    "{artist} is the best, no one can change my mind",
    "who is watching in {year}?",
    "Anyone still listening to this in {year}?",
    "Thumbs up if you listen this in {year}.",
    "{views} views!!! wow",
    "how does this have {views} views",
    "I was here before {views} views",
    "the part at {time} is so funny",
    "the dance at {time} lol",
    "this song reminds me of {memory}",
    "this song reminds me of {memory} {emoji}",
    "my {relative} loves this song",
    "my {relative} dances to this every morning haha",
    "i came here from {source}",
    "who else is here because of {source}?",
    "this is so stupid but i can't stop watching",
    "{artist} you are my idol",
    "this song is so overrated",
    "honestly this is trash, i don't get the hype",
    "I don't get why people like this",
    "the lyrics are so deep if you actually listen",
    "{artist} > everyone else",
    "saw {artist} live in {city}, way better than the video",
    "why does this have dislikes? people have no taste",
    "{dislikes} people didn't like it, they must be deaf",
    "stop spamming the comments, nobody is going to check your channel",
    "so many people begging for subscribers here smh",
    "why are the comments full of people asking to subscribe to them",
    "check out the live version, it's even better",
    "Check out the acoustic version of this, it's beautiful",
    "can someone tell me the name of the song at {time}?",
    "{song} + {artist} = perfection",
    "listening to this for {years_ago} and still love it",
    "this was the anthem of my summer",
    "the beat drops at {time} and i lose it {emoji}",
    "i can't stop singing {song}",
    "who is the girl at {time}? she is so pretty",
    "whoever is reading this, have a nice day {emoji}",
    "I'm here before this hits {views} views",
    "not gonna lie this is my guilty pleasure",
    "the video is weird but the song is amazing",
    "this song got me through a really hard time. thank you {artist}",
    "every time i hear this i want to dance",
    "my favourite song of {artist} for sure",
    "{artist} please come to {city}!!",
    "This song is so annoying but I keep coming back lol",
    "the old {artist} was better",
    "whoever made this video is a genius",
    "who's here after the new song came out?",
    "lyrics: {lyrics}",
    "full lyrics here {lyrics} if anyone wants to sing along",
    "you can find the lyrics at {lyrics}",
    "the bass in this song is insane",
    "this is how you make a music video",
    "me and my friends danced to this all night",
    "{artist} is so talented, how is this real",
]

_SPAM = [
    "Check out my channel {link}",
    "check out my channel please!!",
    "Hey guys check out my new channel and our first video!! please subscribe",
    "You should check my channel for funny videos!!",
    "and you should check my channel and tell me what I should do next!",
    "Subscribe to my channel",
    "sub to me and i will sub back {emoji}",
    "please subscribe to me, i'm trying to get {subs} subscribers before {month}",
    "Please check out my cover of {song}, it would mean a lot to me",
    "I'm a {age} year old {role} trying to make it. "
    "Please check out my music and tell me what you think",
    "Hi everyone! I know most of you will skip this, "
    "but please take a second and check out my videos. Thanks!",
    "Get free {gift} gift cards here: {link}",
    "FREE {gift} GIFT CARDS!!! {link}",
    "I got a free {money} {gift} gift card from this site {link} it really works",
    "Like this comment if you want {artist} to come to {city}",
    "like this comment so everyone can see it!! {link}",
    "Like this comment if you think this song is better than anything today and check my channel",
    "please help me reach {subs} subscribers, it would make my day",
    "make {money} a day from home, see how: {link}",
    "I make {money} a week working online, it's so easy {link}",
    "{link} check this out",
    "{link} come follow and watch my stream!",
    "Vote for me please {link}",
    "please like :D {link}",
    "Hey, check out my new website!! {link}",
    "Follow me on {platform} {at_handle} and I'll follow back",
    "follow me on {platform} please {link}",
    "Love this song! check out my channel for covers {emoji}",
    "{song} is the best!! btw I make remixes, check my channel",
    "Who wants {views} free views? {link}",
    "my sister just received over {subs} new youtube views right now. "
    "The only thing she used was {link}",
    "Sorry for spamming but please watch my new video {link}",
    "{emoji} new video on my channel {emoji}",
    "Hello everyone, I'm a small youtuber. Please give my channel a chance",
    "Can you guys please check out my video? i worked really hard on it",
    "if you like {genre} music, check out my channel, new songs every week",
    "Earn {money} per day with this app: {link}",
    "WANT FREE {gift} CODES? {link}",
    "Please visit {link} and share",
    "go to my channel and watch my dance video, I'm better than {artist} haha",
    "everyone please go and like my video {link}",
    "Give me a chance! I upload {genre} beats. Just click on my picture",
    "Show your pride HERE: {link}",
    "The only thing I used to get {subs} subscribers was {link}",
    "Hey, I'm trying to win a contest, please like my photo {link}",
]

_GIFTS = ["amazon", "itunes", "psn", "steam", "google play", "xbox", "netflix", "walmart"]
_PLATFORMS = ["twitter", "instagram", "facebook", "soundcloud", "twitch", "tumblr"]
_ROLES = ["rapper", "singer", "producer", "songwriter", "dancer", "guitarist", "beatmaker"]
_MONTHS = ["christmas", "new year", "summer", "my birthday", "the end of the month", "june"]
_SITE_WORDS = [
    "promo", "views", "tube", "boost", "free", "gift", "cash", "win", "easy", "fan", "club",
    "star", "media", "codes", "hub", "daily", "vote", "music", "shop", "deal", "top", "kids",
]  # fmt: skip
_TLDS = ["com", "com", "com", "net", "org", "info", "co", "tk"]
_SHORTENERS = ["bit.ly", "goo.gl", "tinyurl.com", "ow.ly"]
_LYRICS_SITES = ["lyricsbay.net", "songtextz.com", "thelyricvault.com", "lyricfind-music.org"]
_SEPARATORS = [" ", " ", " ", ". ", "! ", " - ", "... ", ", "]


class CommentOptions(TypedDict, total=False):
    """Keyword arguments of :func:`generate_comments`, passed through by :func:`write_comments`."""

    n: int
    seed: int
    videos: int


def generate_comments(n: int = 1_500, *, seed: int = 0, videos: int = 5) -> dict[str, pd.DataFrame]:
    """Generate ``n`` YouTube-like comments spread over ``videos`` files.

    Returns ``{file name: frame}`` with names ``Youtube01-Generated.csv`` ... and frames with
    the real collection's columns ``COMMENT_ID, AUTHOR, DATE, CONTENT, CLASS`` in that order
    (DATE is ISO text, empty on the spam rows of the fourth file; CLASS is ``1`` for spam,
    ``0`` for ham, about half each). Deterministic for ``seed``. Nothing here is real data.
    """
    if n < 0 or videos < 1:
        raise ValueError(f"need n >= 0 and videos >= 1, got n={n}, videos={videos}")
    rng = random.Random(seed)
    ids: set[str] = set()
    frames: dict[str, pd.DataFrame] = {}
    for index, size in enumerate(_split(rng, n, videos)):
        video = _VIDEOS[index % len(_VIDEOS)]
        if index >= len(_VIDEOS):
            video = video._replace(artist=f"{video.artist} {index // len(_VIDEOS) + 1}")
        style = _STYLES[index % len(_STYLES)]
        frames[f"Youtube{index + 1:02d}-Generated.csv"] = _video_frame(rng, size, video, style, ids)
    return frames


def write_comments(folder: Path, **kwargs: Unpack[CommentOptions]) -> list[Path]:
    """Write :func:`generate_comments` ``(**kwargs)`` as CSV files into ``folder``.

    The files are UTF-8 without a byte-order mark, with a header, LF line endings and
    minimal quoting, like the real collection. Returns the paths in file-name order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in generate_comments(**kwargs).items():
        path = folder / name
        path.write_bytes(frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))
        paths.append(path)
    return paths


def _split(rng: random.Random, n: int, videos: int) -> list[int]:
    """File sizes in the real files' proportions (350, 350, 438, 448, 370), adding up to ``n``."""
    real = [350, 350, 438, 448, 370]
    weights = [real[i % len(real)] * rng.uniform(0.95, 1.05) for i in range(videos)]
    total = sum(weights)
    sizes = [int(n * w / total) for w in weights]
    for i in range(n - sum(sizes)):
        sizes[i % videos] += 1
    return sizes


def _video_frame(
    rng: random.Random, size: int, video: _Video, style: _Style, ids: set[str]
) -> pd.DataFrame:
    first = datetime.fromisoformat(style.first_day)
    span = (datetime.fromisoformat(style.last_day) - first).total_seconds()
    times = sorted(
        first + timedelta(seconds=rng.uniform(0, span)) for _ in range(size)
    )  # oldest first
    spam_rate = rng.uniform(0.45, 0.56)
    id_prefix = "".join(rng.choices(string.ascii_letters + string.digits, k=10))
    spammers: list[str] = []
    rows: list[tuple[str, str, bool, int]] = []  # author, content, is spam, label (noisy)
    spam_rows: list[int] = []
    for when in times:
        spam = rng.random() < spam_rate
        if spam and spam_rows and rng.random() < _REPOSTS:
            # A spammer posts the same text again, later.
            author, content, _, _ = rows[rng.choice(spam_rows)]
        elif spam:
            author = _spam_author(rng, spammers)
            content = _finish(rng, _spam_text(rng, video, style), style)
        else:
            author = _ham_author(rng)
            content = _finish(rng, _ham_text(rng, video, when.year, style), style)
        label = int(spam)
        if rng.random() < _LABEL_NOISE:
            label = 1 - label
        if spam:
            spam_rows.append(len(rows))
        rows.append((author, content, spam, label))
    order = range(size - 1, -1, -1) if style.newest_first else range(size)
    records = []
    for i in order:
        author, content, spam, label = rows[i]
        date = _format_date(rng, times[i], style.microseconds)
        if style.spam_without_date and spam:
            date = ""
        records.append((_comment_id(rng, id_prefix, ids), author, date, content, label))
    frame = pd.DataFrame.from_records(records, columns=COLUMNS)
    for column in COLUMNS[:-1]:
        frame[column] = frame[column].astype("str")
    frame["DATE"] = frame["DATE"].where(frame["DATE"] != "", None)
    frame["CLASS"] = frame["CLASS"].astype("int64")
    return frame


def _comment_id(rng: random.Random, prefix: str, taken: set[str]) -> str:
    """Ids shaped like the real ones: ``z1...`` (33/35/37 chars) or a 43-char base64url id."""
    while True:
        if rng.random() < 0.3:
            alphabet = string.ascii_letters + string.digits + "-_"
            cid = prefix + "".join(rng.choices(alphabet, k=33))
        else:
            body = "".join(
                rng.choices(string.ascii_lowercase + string.digits, k=rng.choice([31, 33]))
            )
            cid = "z1" + body + ("0k" if rng.random() < 0.3 else "")
        if cid not in taken:
            taken.add(cid)
            return cid


def _format_date(rng: random.Random, when: datetime, microseconds: bool) -> str:
    if microseconds:
        return when.replace(microsecond=rng.randrange(1000) * 1000).isoformat(
            timespec="microseconds"
        )
    return when.replace(microsecond=0).isoformat(timespec="seconds")


def _person(rng: random.Random) -> str:
    name = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
    roll = rng.random()
    if roll < 0.15:
        return name.lower()
    if roll < 0.25:
        return name.split()[0] + " " + name.split()[1][0]
    return name


def _handle(rng: random.Random) -> str:
    first, second = rng.sample(_HANDLE_PARTS, 2)
    roll = rng.random()
    if roll < 0.3:
        return f"{rng.choice(_FIRST_NAMES)}{second}"
    if roll < 0.5:
        return f"{first}{second}{rng.randrange(100)}"
    return f"{first}{second}"


def _ham_author(rng: random.Random) -> str:
    return _person(rng) if rng.random() < 0.8 else _handle(rng)


def _spam_author(rng: random.Random, spammers: list[str]) -> str:
    if spammers and rng.random() < 0.15:
        return rng.choice(spammers)  # the same channel plugs itself with another text
    author = _handle(rng) if rng.random() < 0.6 else _person(rng)
    spammers.append(author)
    return author


def _fill(rng: random.Random, template: str, video: _Video, year: int = 2015) -> str:
    values = {
        "artist": video.artist,
        "song": video.song,
        "genre": video.genre,
        "year": str(year),
        "emoji": rng.choice(_EMOJI) * rng.choice([1, 1, 2, 3]),
        "views": rng.choice(
            ["1 billion", "2 billion", "500 million", "100M", "1B", "2,000,000,000"]
        ),
        "dislikes": f"{rng.randrange(10, 900)},{rng.randrange(1000):03d}",
        "time": f"{rng.randrange(4)}:{rng.randrange(60):02d}",
        "memory": rng.choice(_MEMORIES),
        "relative": rng.choice(_RELATIVES),
        "source": rng.choice(_SOURCES),
        "city": rng.choice(_CITIES),
        "years_ago": rng.choice(_YEARS_AGO),
        "lyrics": _lyrics_link(rng, video),
        "link": "",
        "subs": rng.choice(["100", "500", "1000", "1k", "5,000", "10k", "6,500"]),
        "month": rng.choice(_MONTHS),
        "age": str(rng.randrange(13, 24)),
        "role": rng.choice(_ROLES),
        "gift": rng.choice(_GIFTS),
        "money": rng.choice(["$50", "$100", "$250", "$500", "£100", "$25", "300 dollars"]),
        "platform": rng.choice(_PLATFORMS),
        "at_handle": "@" + _handle(rng).lower(),
    }
    if "{link}" in template:
        values["link"] = _link(rng)
    return template.format(**values)


def _ham_text(rng: random.Random, video: _Video, year: int, style: _Style) -> str:
    roll = rng.random()
    if roll < 0.16:
        text = _fill(rng, rng.choice(_SHORT_HAM), video)
        if rng.random() < 0.3:
            text += " " + rng.choice(_EMOJI) * rng.randrange(1, 4)
        return text
    if roll < 0.20:
        return "".join(rng.choice(_EMOJI) for _ in range(rng.randrange(1, 6)))
    if roll < 0.25:
        return _fill(rng, rng.choice(_FOREIGN_HAM), video)
    parts = [_fill(rng, rng.choice(_HAM), video, year)]
    if rng.random() < 0.25:
        parts.append(_fill(rng, rng.choice(_HAM + _SHORT_HAM), video, year))
    return _join(rng, parts, style)


def _spam_text(rng: random.Random, video: _Video, style: _Style) -> str:
    parts = [_fill(rng, rng.choice(_SPAM), video)]
    roll = rng.random()
    if roll < 0.15:
        # Praise first, then the plug: the spam borrows ham words.
        parts.insert(0, _fill(rng, rng.choice(_HAM[:20] + _SHORT_HAM[:12]), video))
    elif roll < 0.30:
        parts.append(_fill(rng, rng.choice(_SPAM), video))
    elif roll < 0.40 and "{link}" not in parts[0]:
        parts.append(_link(rng))
    text = _join(rng, parts, style)
    if rng.random() < 0.1 and "/" not in text:
        text = text.upper()
    if rng.random() < 0.3:
        text += rng.choice(["!", "!!", "!!!", " :)", " :D", " thanks", " thank you!", " plz"])
    if rng.random() < 0.01:
        text = text.replace(" please ", "\nplease ", 1).replace(". ", ".\n", 1)
    return text


def _join(rng: random.Random, parts: list[str], style: _Style) -> str:
    text = parts[0]
    for part in parts[1:]:
        glue = "<br />" if style.html and rng.random() < 0.3 else rng.choice(_SEPARATORS)
        if text[-1:] in ("?", "!", ".") and glue != "<br />":
            glue = " "
        if glue.strip() in (".", "!", "<br />") and part.split(" ")[0].isalpha():
            part = part[:1].upper() + part[1:]  # a new sentence
        text += glue + part
    return text


def _random_word(rng: random.Random) -> str:
    return "".join(rng.sample(_SITE_WORDS, 2))


def _link(rng: random.Random) -> str:
    """A spammy link: with or without a scheme, shortened, a YouTube id, or spelled out."""
    roll = rng.random()
    site = f"{_random_word(rng)}.{rng.choice(_TLDS)}"
    code = "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randrange(5, 9)))
    if roll < 0.25:
        return f"http://www.{site}/{rng.choice(['', 'free', 'win', 'promo', 'user'])}"
    if roll < 0.40:
        return f"https://{rng.choice(_SHORTENERS)}/{code}"
    if roll < 0.55:
        return f"www.{site}"
    if roll < 0.65:
        return f"{rng.choice(_SHORTENERS)}/{code}"
    if roll < 0.78:
        video_id = "".join(rng.choices(string.ascii_letters + string.digits + "-_", k=11))
        return (
            rng.choice(["watch?v=", "youtube.com/watch?v=", "https://www.youtube.com/watch?v="])
            + video_id
        )
    if roll < 0.88:
        name, tld = site.rsplit(".", 1)
        return f"{name}  . {tld}"  # spelled out to get past filters
    return f"youtube.com/user/{_handle(rng)}"


def _lyrics_link(rng: random.Random, video: _Video) -> str:
    slug = f"{video.artist}/{video.song}".lower().replace(" ", "-")
    scheme = rng.choice(["http://", "https://www.", "www.", ""])
    return f"{scheme}{rng.choice(_LYRICS_SITES)}/{slug}"


def _finish(rng: random.Random, text: str, style: _Style) -> str:
    """The site's quirks: HTML escapes, anchors, a trailing U+FEFF."""
    if style.html:
        if rng.random() < 0.8:
            text = text.replace("&", "&amp;").replace("'", "&#39;").replace('"', "&quot;")
        if "http" in text and rng.random() < 0.4:
            text = " ".join(_anchor(w) if w.startswith("http") else w for w in text.split(" "))
    if rng.random() < style.bom:
        text += (" " if rng.random() < 0.12 else "") + "\ufeff"
    return text


def _anchor(word: str) -> str:
    url = word.rstrip("!.,:)")
    return f'<a href="{url}">{url}</a>{word[len(url) :]}'
