"""An offline gazetteer of person names: built once from names-dataset, read at run time.

names-dataset (Facebook-derived first and last names per country) is 1.9 GB in
memory and takes about 16 s to load, so the service never imports it. This
module instead builds a small, reproducible extract of it,
`servers/rag/data/names.json.gz`, and reads that file (once per process) for
the name rules of `pii` and `screening`:

    .venv/bin/python -m servers.rag.gazetteer     # rebuilds the file, byte for byte

The extract holds the top `TOP_NAMES` first names of each gender and the top
`TOP_NAMES` last names of each country in `COUNTRIES` (Latin-script names; the
dataset has no Australia), lowercased, single words of Latin letters (an inner
hyphen or apostrophe allowed), at least three letters long, deduplicated and
sorted. The dataset is noisy (page names such as "Sales", words such as
"This"), and many real names are also English words ("May", "Grant", "Rose"),
so three word lists written here shape it:

- `FUNCTION_WORDS` are never names: dropped from both lists (the modal "Will"
  among them: "Will Power" is no person, and Will as a surname is rare).
- `PLACE_WORDS` name places and organisations ("Street", "University", "San");
  they are dropped from both lists, and `pii` never takes one for a surname,
  so neither "Victoria Station" nor "San Francisco" is a person.
- `COMMON_WORDS` are ordinary words: as first names they move to `ambiguous`,
  where they count only before a known last name ("Grant Thompson", not
  "Grant Program"); as last names they stay ("John Brown").
"""

from __future__ import annotations

import functools
import gzip
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _words(text: str) -> frozenset[str]:
    """The whitespace-separated words of `text` (keeps long word lists readable)."""
    return frozenset(text.split())


#: Countries whose names the gazetteer holds (ISO 3166 alpha-2).
COUNTRIES: tuple[str, ...] = (
    "US",
    "GB",
    "CA",
    "IE",
    "FR",
    "DE",
    "ES",
    "IT",
    "NL",
    "PT",
    "BR",
    "MX",
    "SE",
    "PL",
    "AT",
    "BE",
    "CH",
    "AR",
)
#: How many first names (per gender) and last names of each country are kept.
TOP_NAMES = 1500
#: The built gazetteer, shipped with the package.
NAMES_FILE = Path(__file__).with_name("data") / "names.json.gz"

FUNCTION_WORDS = _words(
    """
    a about above after again against ago all also am an and any are as at be been before
    being both but by can could dear did do does done each else ever every few for from had
    has have he hello hence her here hers hey hi him his how if in into is it its just less
    many me might more most much must my new nice no nor not now of off on once only onto
    or other our out over own per please put read real regards said same say says sees she
    should since so some such than thanks that the their them then there these they this
    those though thus till to too under until up upon us very via was we well were what when
    where which while who whom why will with would yes yet you your yous
    six seven eight nine ten one two three four five
    """
)

PLACE_WORDS = _words(
    """
    abbey academy accord act agency airlines airport airways alley arena army association
    atelier ave avenue award awards bank beach bistro blvd boulevard bridge building cafe
    cafeteria canyon capital castle cathedral center centre chapel church city clinic club
    coast college committee company conference corp corporation council county court creek
    cup day democrats department district drive energy estate falls festival forest fort
    foundation fund gallery garage garden gardens group harbor harbour heights highway hills
    holdings hospital hotel house institute island islands journal lake lane las league
    library los ltd mall market memorial ministry monument motors mount mountain mountains
    museum navy news office painting palace parish partners party pictures pizzas place
    plaza port post press prize program programme project province records region report
    republicans restaurant review river road saint sainte sales salon san sankt santa santo
    school shop showroom society solarium souvenirs square stadium state station store
    street studio studios summit systems são taxi team tech technologies temple terminal
    theater theatre times tower town transport treaty trust union university valley village
    week
    """
)

COMMON_WORDS = _words(
    """
    ace afar afghan age aide ailed ails akin albino ale ales alien aline ally alpha amber
    angel angels ani ant ante anti apart april ares aria aromas art ascension ash ashy aster
    ate august aura austin autumn aye baby badger bah balder bane bar barb barrio bat
    beat beats beau becks bee beer bell belle berg berry berth bet beta bets bid biddy big
    bilge bill binder birdie bits bitten blank blend blessing blossom bog bogus bola
    bonny bony boo boy bozo brandy bras breed brew bride brook buck bud buddy budgie bunny
    buster butch cal cam came candy car carmine carolina carry cassia cat catch cats cello
    cerise chance char charity chary chase cherry chi chili china chino chip chopper
    christen christian chuck chunk cilia cis clay cliff cloves cock cocky coiffure coke col
    collie comfort con constant coral cord cork corny corona cry crystal curly curt dado
    dahlia daisy dakota dallas dam dams dawn deep deli den deny desire destiny dewy diamond
    dilly dim dimple dine diva divine doc dodo dolly dome domino door dory dos dot dots dotty
    dragon drake drew dries duke dung dusty earl ebony echo edit eel eider eke elder elide
    ell elves emir ester euro evens ewe faith fall fan fanny fares farina farmer fedora fee
    felicity feline fem fer fern ferry fiat filly fin fine fink finny flan flip floor floppy
    flora florence florin flu franc frank gab gabby gage gala gale gamer gardenia garnet
    garret gay gee gees gem gen genesis gent gentian gentile georgia gill ginger girts goof
    gorge grace granny grant gray greet greys grit gun gunny gust gusto gusty guy hang happy
    harm harmony harp harsh hay hazel heath heather heaven hen henna herald herb heron hilly
    hind holly honey honor hope hopper houston hub hue hug hung hunter hyacinth ids ind india
    invest ion ire iris israel ivy jade jag jaguar jam jar jarred jawed jay jazz jelly jerk
    jest jet jetty jewel job jock joke jolly jordan jot joy julienne july june junior jury
    justice kale key kick kid kin king kiss kit kith kitty lacy laid lam lance lander lass
    laurel lays lea lean lei levy liberty lief lien lies lily limber limerick lincoln linden
    line lion little llanos loan lode london long lopes lore lot lotus love lovely lucky
    lucre lynch mad magnolia man mane mange mania manicure mans mantis mar march mare
    margarita marina marine marines mark marlin marquis marry mars mart marten martens
    martial mass mat math mats matte mattes matts maverick max maxim maxima may mayo maze med
    meet meh melody meme memes memo mentor mercy mere merry meta mete mica mien mile miles
    mimosa min mine mini mink mire misses misty mite mitt mode moll mono moo moon moos moss
    mossy mousey mushy myrtle nacho nadir nail nails nanny natal natty nay nevada nil nines
    noddy non norm nose nova novella octave odd olive ova owe pad pal pan panda
    panic papa paris pas paschal pat patch patience pats paw pawl pearl peer peg penny pep
    petite petty phoenix piccolo pier pierce piers pies ping pinky pinto pip pipe pit pita
    pity pod pol polish polo poncho pop poppy precious pretty prince princess prosper
    prune puck puma ram randy rapid rares raven ray red reed rein reis rhea rich rim rinse
    roan roar rob robe rock rocky rod romaine roman rose rosemary rosette rosy rouse rowdy
    royal ruby ruddy rune rusty rut saber saffron saga sage sahib sake samba san sand
    sander sandy sang santa santiago sapphire sari sat savanna savannah scarlet seamy semi
    senna sera sere serene sewer shah sheikh shell sherry shy sierra silvan silver sim sissy
    skip sky slaw slim sly snowy sol sole solo son sonata song sow spike
    spud staff stall stand star stare step sterling stew stoney storm sue sully sultana
    summer sun sunny sunshine swami swan sydney tabby taco tacos tad tales taller tam tan
    tanner tea teach tee tester tho tiara ties tiff tilde tine ting tiny toddy toke tome toms
    ton tone tong tor tore toss tote toy tray trees trinity tuba tulle unique urban use vale
    valentine van vane vanes vanity verity victoria vigor villa viola violet virginia viral
    vital wade wander ward warren washington wen wiki willow wily win wing winsome winter
    wit wolf wolfram woody yaw yen yens yogi yon young zed
    """
)

_LATIN_WORD = re.compile("[a-zß-öø-ÿā-ɏ]+(?:['\u2019-][a-zß-öø-ÿā-ɏ]+)*")


@dataclass(frozen=True, slots=True)
class Names:
    """The gazetteer as the recognizers use it (lowercase words).

    Attributes:
        first: First names that are not ordinary words.
        last: Last names (ordinary words included; places and function words not).
        ambiguous: First names that are also ordinary words; they need a known last name.
    """

    first: frozenset[str]
    last: frozenset[str]
    ambiguous: frozenset[str]


@functools.cache
def names() -> Names:
    """The built gazetteer, read once per process (about 30 ms)."""
    lists = json.loads(gzip.decompress(NAMES_FILE.read_bytes()))
    return Names(
        first=frozenset(lists["first"]),
        last=frozenset(lists["last"]),
        ambiguous=frozenset(lists["ambiguous"]),
    )


def _usable(name: str) -> str | None:
    """`name` lowercased if it is one Latin word of three letters or more, else None."""
    word = name.strip().lower()
    if len(word) < 3 or not _LATIN_WORD.fullmatch(word):
        return None
    return word


def extract(
    top_first: dict[str, Any], top_last: dict[str, Any], countries: Iterable[str], top: int
) -> dict[str, Any]:
    """The gazetteer's content from names-dataset's `get_top_names` results.

    Args:
        top_first: `{country: {gender: [names, most frequent first]}}`.
        top_last: `{country: [names, most frequent first]}`.
        countries: The countries to take names from.
        top: How many names to take per country (and per gender for first names).

    Returns:
        A JSON-ready mapping: the sorted lists `first`, `last`, `ambiguous` and
        how they were made.
    """
    chosen = list(countries)
    first: set[str] = set()
    last: set[str] = set()
    for country in chosen:
        for ranked in top_first.get(country, {}).values():
            first.update(word for word in map(_usable, ranked[:top]) if word)
        last.update(word for word in map(_usable, top_last.get(country, [])[:top]) if word)
    never = FUNCTION_WORDS | PLACE_WORDS
    return {
        "source": "names-dataset get_top_names",
        "countries": chosen,
        "top": top,
        "first": sorted(first - never - COMMON_WORDS),
        "last": sorted(last - never),
        "ambiguous": sorted((first & COMMON_WORDS) - never),
    }


def build(destination: Path, countries: Iterable[str] = COUNTRIES, top: int = TOP_NAMES) -> int:
    """Load names-dataset once and write the gazetteer to `destination`.

    The output is reproducible byte for byte: sorted lists, sorted keys, and a
    gzip header without file name or time.

    Returns:
        The size of the written file in bytes.
    """
    # Imported here only: loading it takes ~16 s and 1.9 GB, never at run time.
    from names_dataset import NameDataset  # type: ignore[import-untyped]  # noqa: PLC0415

    dataset = NameDataset()
    content = extract(
        dataset.get_top_names(n=top, use_first_names=True),
        dataset.get_top_names(n=top, use_first_names=False),
        countries,
        top,
    )
    encoded = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    packed = gzip.compress(encoded.encode(), compresslevel=9, mtime=0)
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(packed)
    return len(packed)


def main() -> None:
    """Rebuild `NAMES_FILE` (servers/rag/data/names.json.gz)."""
    size = build(NAMES_FILE)
    sys.stderr.write(f"wrote {NAMES_FILE} ({size} bytes)\n")


if __name__ == "__main__":
    main()
