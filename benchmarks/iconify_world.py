"""The Iconify emoji world: a realistic quality kit for EntityNet, built at run time.

    python benchmarks/iconify_world.py [--cache DIR] [--limit-classes N]   # build (or reuse) the kit
    python benchmarks/iconify_world.py --serve                             # and serve its web

What it builds (nothing here is artwork; every icon comes from the npm registry at run time, with
`npm pack @iconify-json/NAME`, into the cache, default ~/.cache/entitynet/iconify):

- Five emoji styles in Iconify JSON: three "web" (training) styles, emojione, fluent-emoji-flat and
  noto-v1, and two held-out styles, fxemoji and streamline-emojis. Icons are aligned across the
  sets by Unicode codepoint: fluent-emoji-flat's chars.json gives codepoint -> name (the other sets
  ship an empty chars.json), the other sets' names are matched to codepoints through those names,
  Python's Unicode character names (fxemoji squashes them: "bactriancamel") and a few overrides.
- `TAXA`: a hand-written taxonomy of the animal, plant and fungus emoji (below), with KG labels,
  aliases, taxon names and a simplified parent chain up to animal, plant or fungus.
- `kg.ttl`: a Wikidata-shaped Turtle graph of those classes (the vocabulary of
  entitynet/data/sample_kg.ttl) for `entitynet kg expand --kg-file`.
- `web/`: every web-style icon of a taxon in several variants (scale, position, rotation, flip,
  backgrounds, sizes) with noisy web-like alt and page texts; distractors (objects, smileys, food,
  symbols, places, mythical creatures); collages whose texts name many taxa. `IconifyWeb` serves it
  on 127.0.0.1 with a SearXNG-compatible search endpoint that, like a real web engine, does not
  honour "-term" exclusions.
- `eval/`: held-out ImageFolders (fxemoji, streamline-emojis, merged), RGBA PNGs exactly as cairosvg
  renders them, class folders named by the KG label, `labels.tsv` mapping folders to entity ids.
- `truth.json`: the ground truth of the web (image id -> true entity ids) for link precision.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import random
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import unicodedata
import urllib.parse
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

KIT_VERSION = 1
TRAIN_STYLES = ("emojione", "fluent-emoji-flat", "noto-v1")
HELD_OUT_STYLES = ("fxemoji", "streamline-emojis")
STYLE_NAMES = {
    "emojione": "EmojiOne",
    "fluent-emoji-flat": "Fluent Emoji Flat",
    "noto-v1": "Noto Emoji",
    "fxemoji": "Firefox OS Emoji",
    "streamline-emojis": "Streamline Emojis",
}
DEFAULT_CACHE = Path.home() / ".cache" / "entitynet" / "iconify"
VARIANTS_PER_ICON = (6, 8)  # web variants of each training-style icon of a taxon (inclusive range)
COLLAGES = 40

# ---------------------------------------------------------------- the taxonomy


@dataclass
class T:
    """One class of the taxonomy: a leaf with emoji (cps) or a group above them (or both)."""

    label: str  # the KG label (rdfs:label@en), also the evaluation class folder
    parents: tuple[str, ...] = ()  # labels of parents; the first is P171 (taxa) or P279 (classes)
    taxon: str = ""  # P225; empty for classes that are not taxa
    rank: str = ""  # species, genus, family, order, class, phylum, kingdom
    sitelinks: int = 30
    description: str = ""
    aliases: tuple[str, ...] = ()  # skos:altLabel@en
    common: tuple[str, ...] = ()  # P1843 (English common names)
    cps: tuple[str, ...] = ()  # emoji codepoints (hex, ZWJ sequences joined by "-") of this class
    words: tuple[str, ...] = ()  # generic words for the web's texts ("animal", "fruit"), inherited
    qid: str = ""  # a real Wikidata id where the expansion depends on it; else synthetic
    id: str = field(default="", init=False)


RANKS = {
    "species": "Q7432", "genus": "Q34740", "family": "Q35409", "order": "Q36602",
    "class": "Q37517", "phylum": "Q38348", "kingdom": "Q36732",
}  # fmt: skip

# Face-only duplicates: when a species has a full-body emoji and a face emoji (dog and dog face),
# both codepoints are merged into ONE entity and its images are the union (the face is just
# another picture of the dog). The same goes for ox + cow, ram + ewe, rooster + chicks + chicken,
# red + green apple, shamrock + four-leaf clover, brown mushroom + mushroom, whale + spouting whale.
# Left out entirely (neither class nor distractor, since they are ambiguous): the three wise monkeys
# and cat smileys (Smileys), pig nose, paw prints, hatching chick, spider web, spiral shell, seedling,
# herb, blossom, white/wilted flower, fallen/fluttering leaf, potted plant, leafy green, microbe,
# feather, wing, nests, guide and service dogs, black cat, blackbird.
# Mythical creatures (unicorn, dragon, phoenix) and things named after animals (hot dog, teddy
# bear, carousel horse, computer mouse, zodiac signs) are distractors.
TAXA: list[T] = [
    # ---------------- roots
    T("animal", (), "Animalia", "kingdom", 300, "kingdom of multicellular eukaryotic organisms",
      ("animals", "fauna"), words=("animal",), qid="Q729"),
    T("plant", (), "Plantae", "kingdom", 280, "kingdom of photosynthetic eukaryotes",
      ("plants", "flora"), words=("plant", "nature"), qid="Q756"),
    T("fungus", (), "Fungi", "kingdom", 200, "kingdom of eukaryotic organisms", ("fungi",),
      words=("fungus", "nature"), qid="Q764"),
    # ---------------- animal groups
    T("mammal", ("animal",), "Mammalia", "class", 260, "class of vertebrate animals", ("mammals",),
      words=("animal", "mammal"), qid="Q7377"),
    T("bird", ("animal",), "Aves", "class", 250, "class of feathered flying vertebrates", ("birds", "avian"),
      cps=("1f426",), words=("bird", "animal"), qid="Q5113"),
    T("reptile", ("animal",), "Reptilia", "class", 180, "class of cold-blooded vertebrates", ("reptiles",),
      words=("reptile", "animal"), qid="Q10811"),
    T("amphibian", ("animal",), "Amphibia", "class", 160, "class of vertebrates", ("amphibians",),
      words=("amphibian", "animal"), qid="Q10908"),
    T("fish", ("animal",), "Pisces", "", 220, "aquatic vertebrate animal with gills", ("fishes",),
      cps=("1f41f",), words=("fish", "sea animal"), qid="Q152"),
    T("arthropod", ("animal",), "Arthropoda", "phylum", 140, "phylum of invertebrates with exoskeletons",
      ("arthropods",), words=("animal", "bug")),
    T("insect", ("arthropod",), "Insecta", "class", 200, "class of arthropods with six legs", ("insects",),
      words=("insect", "bug"), qid="Q1390"),
    T("arachnid", ("arthropod",), "Arachnida", "class", 110, "class of eight-legged arthropods",
      ("arachnids",), words=("arachnid", "bug")),
    T("crustacean", ("arthropod",), "Crustacea", "", 110, "group of arthropods", ("crustaceans",),
      words=("sea animal", "seafood")),
    T("mollusc", ("animal",), "Mollusca", "phylum", 130, "phylum of invertebrate animals",
      ("molluscs", "mollusk"), words=("sea animal", "animal")),
    T("cephalopod", ("mollusc",), "Cephalopoda", "class", 90, "class of molluscs with tentacles",
      ("cephalopods",), words=("sea animal",)),
    T("cnidarian", ("animal",), "Cnidaria", "phylum", 80, "phylum of aquatic animals", ("cnidarians",),
      words=("sea animal",)),
    T("carnivoran", ("mammal",), "Carnivora", "order", 130, "order of mammals", ("carnivores",),
      words=("wild animal",)),
    T("canid", ("carnivoran",), "Canidae", "family", 90, "family of dog-like carnivorans",
      ("canids", "dog family")),
    T("felid", ("carnivoran",), "Felidae", "family", 100, "family of cats", ("felids", "cat family")),
    T("mustelid", ("carnivoran",), "Mustelidae", "family", 70, "family of carnivorous mammals",
      ("mustelids", "weasel family")),
    T("primate", ("mammal",), "Primates", "order", 150, "order of mammals", ("primates",),
      words=("wild animal",)),
    T("great ape", ("primate",), "Hominidae", "family", 80, "family of primates", ("great apes", "hominid")),
    T("rodent", ("mammal",), "Rodentia", "order", 130, "order of mammals with gnawing teeth", ("rodents",)),
    T("lagomorph", ("mammal",), "Lagomorpha", "order", 60, "order of mammals", ("lagomorphs",)),
    T("even-toed ungulate", ("mammal",), "Artiodactyla", "order", 90, "order of hoofed mammals",
      ("artiodactyl", "cloven-hoofed mammal")),
    T("bovid", ("even-toed ungulate",), "Bovidae", "family", 70, "family of cloven-hoofed ruminants",
      ("bovids", "cattle family"), words=("farm animal",)),
    T("suid", ("even-toed ungulate",), "Suidae", "family", 50, "family of pigs", ("pig family",)),
    T("camelid", ("even-toed ungulate",), "Camelidae", "family", 60, "family of camels and llamas",
      ("camelids",)),
    T("cervid", ("even-toed ungulate",), "Cervidae", "family", 70, "family of deer", ("deer family",)),
    T("cetacean", ("mammal",), "Cetacea", "order", 100, "aquatic mammals: whales and dolphins",
      ("cetaceans",), words=("sea animal", "marine mammal")),
    T("odd-toed ungulate", ("mammal",), "Perissodactyla", "order", 70, "order of hoofed mammals",
      ("perissodactyl",)),
    T("equid", ("odd-toed ungulate",), "Equidae", "family", 70, "family of horses", ("horse family",)),
    T("proboscidean", ("mammal",), "Proboscidea", "order", 50, "order of mammals with trunks",
      ("proboscideans",)),
    T("marsupial", ("mammal",), "Marsupialia", "", 100, "mammals that carry young in a pouch",
      ("marsupials",), words=("australian animal",)),
    T("galliform", ("bird",), "Galliformes", "order", 60, "order of heavy-bodied ground birds",
      ("landfowl", "gamebird"), words=("farm animal",)),
    T("waterfowl", ("bird",), "Anatidae", "family", 80, "family of water birds", ("anatid", "ducks and geese"),
      words=("water bird",)),
    T("pigeon family", ("bird",), "Columbidae", "family", 70, "family of birds", ("columbid",)),
    T("dinosaur", ("reptile",), "Dinosauria", "", 180, "clade of reptiles, mostly extinct", ("dinosaurs",),
      words=("prehistoric animal",)),
    T("hymenopteran", ("insect",), "Hymenoptera", "order", 80, "order of insects", ("hymenopterans",)),
    T("beetle", ("insect",), "Coleoptera", "order", 150, "order of insects", ("beetles", "coleopteran"),
      cps=("1fab2",)),
    T("lepidopteran", ("insect",), "Lepidoptera", "order", 90, "order of insects: butterflies and moths",
      ("lepidopterans", "butterflies and moths")),
    T("dipteran", ("insect",), "Diptera", "order", 80, "order of insects: true flies", ("true fly",)),
    # ---------------- mammals
    T("dog", ("canid",), "Canis familiaris", "species", 250, "domestic animal",
      ("domestic dog", "doggy", "puppy"), ("dog",), cps=("1f415", "1f436"), words=("pet",)),
    T("poodle", ("dog",), "", "", 70, "dog breed", ("french poodle", "caniche"), cps=("1f429",), words=("pet",)),
    T("wolf", ("canid",), "Canis lupus", "species", 160, "species of mammal", ("gray wolf", "grey wolf"),
      ("wolf",), cps=("1f43a",)),
    T("fox", ("canid",), "Vulpes vulpes", "species", 150, "species of mammal", ("red fox",), ("red fox",),
      cps=("1f98a",)),
    T("cat", ("felid",), "Felis catus", "species", 240, "domestic species of small carnivorous mammal",
      ("domestic cat", "house cat", "kitty", "kitten"), ("cat",), cps=("1f408", "1f431"), words=("pet",)),
    T("tiger", ("felid",), "Panthera tigris", "species", 200, "large striped cat native to Asia",
      ("Bengal tiger",), ("tiger",), cps=("1f405", "1f42f")),
    T("lion", ("felid",), "Panthera leo", "species", 220, "large cat of the genus Panthera",
      ("African lion", "king of the jungle"), ("lion",), cps=("1f981",)),
    T("leopard", ("felid",), "Panthera pardus", "species", 140, "large cat with a spotted coat", ("panther",),
      ("leopard",), cps=("1f406",)),
    T("bear", ("carnivoran",), "Ursidae", "family", 170, "family of large carnivoran mammals",
      ("bears", "brown bear", "grizzly"), cps=("1f43b",)),
    T("polar bear", ("bear",), "Ursus maritimus", "species", 130, "bear native to the Arctic",
      ("ice bear", "white bear"), ("polar bear",), cps=("1f43b-200d-2744",)),
    T("giant panda", ("bear",), "Ailuropoda melanoleuca", "species", 150, "bear native to China",
      ("panda", "panda bear"), ("giant panda",), cps=("1f43c",)),
    T("badger", ("mustelid",), "Meles meles", "species", 70, "mustelid mammal", ("European badger",),
      ("badger",), cps=("1f9a1",)),
    T("otter", ("mustelid",), "Lutrinae", "", 80, "semiaquatic mustelid", ("otters", "sea otter"),
      cps=("1f9a6",)),
    T("raccoon", ("carnivoran",), "Procyon lotor", "species", 80, "mammal native to North America",
      ("racoon", "common raccoon"), ("raccoon",), cps=("1f99d",)),
    T("skunk", ("carnivoran",), "Mephitidae", "family", 60, "striped mammal that sprays", ("polecat",),
      cps=("1f9a8",)),
    T("seal", ("carnivoran",), "Phocidae", "family", 80, "earless seal", ("true seal", "harbor seal"),
      cps=("1f9ad",), words=("sea animal",)),
    T("monkey", ("primate",), "Simiiformes", "", 150, "primate that is not an ape", ("macaque", "simian"),
      cps=("1f412", "1f435")),
    T("gorilla", ("great ape",), "Gorilla", "genus", 120, "genus of great apes", ("gorillas",),
      cps=("1f98d",)),
    T("orangutan", ("great ape",), "Pongo", "genus", 100, "genus of great apes", ("orang-utan", "orangutang"),
      cps=("1f9a7",)),
    T("rat", ("rodent",), "Rattus norvegicus", "species", 120, "species of rodent", ("brown rat", "sewer rat"),
      ("brown rat",), cps=("1f400",)),
    T("mouse", ("rodent",), "Mus musculus", "species", 140, "species of rodent", ("house mouse", "mice"),
      ("house mouse",), cps=("1f401", "1f42d")),
    T("hamster", ("rodent",), "Mesocricetus auratus", "species", 90, "small rodent kept as a pet",
      ("golden hamster", "Syrian hamster"), ("golden hamster",), cps=("1f439",), words=("pet",)),
    T("chipmunk", ("rodent",), "Tamias", "genus", 70, "small striped squirrel", ("chipmunks", "ground squirrel"),
      cps=("1f43f",)),
    T("beaver", ("rodent",), "Castor", "genus", 90, "large semiaquatic rodent", ("beavers",), cps=("1f9ab",)),
    T("rabbit", ("lagomorph",), "Oryctolagus cuniculus", "species", 170, "species of mammal",
      ("bunny", "European rabbit", "hare"), ("European rabbit",), cps=("1f407", "1f430"), words=("pet",)),
    T("cow", ("bovid",), "Bos taurus", "species", 200, "domesticated bovine", ("cattle", "ox", "bull"),
      ("cattle",), cps=("1f404", "1f42e", "1f402")),
    T("water buffalo", ("bovid",), "Bubalus bubalis", "species", 90, "large bovid of Asia",
      ("domestic water buffalo", "carabao"), ("water buffalo",), cps=("1f403",)),
    T("bison", ("bovid",), "Bison bison", "species", 90, "large bovine of North America",
      ("American bison", "buffalo"), ("American bison",), cps=("1f9ac",)),
    T("goat", ("bovid",), "Capra hircus", "species", 150, "domesticated species of goat-antelope",
      ("domestic goat", "billy goat"), ("goat",), cps=("1f410",)),
    T("sheep", ("bovid",), "Ovis aries", "species", 170, "domesticated ruminant kept for wool",
      ("domestic sheep", "ram", "ewe", "lamb"), ("sheep",), cps=("1f411", "1f40f")),
    T("pig", ("suid",), "Sus domesticus", "species", 180, "domesticated pig", ("domestic pig", "hog", "swine"),
      ("pig",), cps=("1f416", "1f437")),
    T("wild boar", ("suid",), "Sus scrofa", "species", 120, "wild suid of Eurasia", ("boar", "wild pig"),
      ("wild boar",), cps=("1f417",)),
    T("dromedary", ("camelid",), "Camelus dromedarius", "species", 100, "one-humped camel",
      ("camel", "Arabian camel", "one-hump camel"), ("dromedary",), cps=("1f42a",)),
    T("Bactrian camel", ("camelid",), "Camelus bactrianus", "species", 80, "two-humped camel",
      ("two-hump camel", "Mongolian camel"), ("Bactrian camel",), cps=("1f42b",)),
    T("llama", ("camelid",), "Lama glama", "species", 90, "domesticated South American camelid",
      ("lama", "alpaca"), ("llama",), cps=("1f999",)),
    T("giraffe", ("even-toed ungulate",), "Giraffa camelopardalis", "species", 150, "tall African mammal",
      ("giraffes",), ("giraffe",), cps=("1f992",)),
    T("deer", ("cervid",), "Cervus elaphus", "species", 130, "hoofed ruminant mammal", ("red deer", "stag"),
      ("red deer",), cps=("1f98c",)),
    T("moose", ("cervid",), "Alces alces", "species", 90, "largest species of deer", ("elk", "Eurasian elk"),
      ("moose",), cps=("1face",)),
    T("hippopotamus", ("even-toed ungulate",), "Hippopotamus amphibius", "species", 120,
      "large semiaquatic African mammal", ("hippo", "river horse"), ("hippopotamus",), cps=("1f99b",)),
    T("whale", ("cetacean",), "", "", 160, "large marine mammal", ("sperm whale", "blue whale", "whales"),
      cps=("1f40b", "1f433")),
    T("dolphin", ("cetacean",), "Delphinidae", "family", 140, "marine mammal", ("oceanic dolphin", "porpoise"),
      cps=("1f42c",)),
    T("horse", ("equid",), "Equus caballus", "species", 210, "domesticated four-legged hoofed mammal",
      ("domestic horse", "pony", "stallion", "mare"), ("horse",), cps=("1f40e", "1f434"), words=("farm animal",)),
    T("donkey", ("equid",), "Equus asinus", "species", 100, "domesticated equine", ("ass", "burro", "mule"),
      ("donkey",), cps=("1facf",), words=("farm animal",)),
    T("zebra", ("equid",), "Hippotigris", "", 130, "African equine with stripes", ("zebras", "plains zebra"),
      cps=("1f993",)),
    T("rhinoceros", ("odd-toed ungulate",), "Rhinocerotidae", "family", 130, "large thick-skinned mammal",
      ("rhino", "white rhinoceros"), cps=("1f98f",)),
    T("elephant", ("proboscidean",), "Elephantidae", "family", 200, "largest living land animal",
      ("African elephant", "Asian elephant", "elephants"), cps=("1f418",)),
    T("mammoth", ("proboscidean",), "Mammuthus", "genus", 100, "extinct elephant-like mammal",
      ("woolly mammoth",), cps=("1f9a3",), words=("prehistoric animal",)),
    T("koala", ("marsupial",), "Phascolarctos cinereus", "species", 120, "arboreal marsupial of Australia",
      ("koala bear",), ("koala",), cps=("1f428",)),
    T("kangaroo", ("marsupial",), "Macropus", "genus", 120, "large hopping marsupial",
      ("red kangaroo", "wallaby"), cps=("1f998",)),
    T("bat", ("mammal",), "Chiroptera", "order", 140, "flying mammal", ("bats", "fruit bat"), cps=("1f987",)),
    T("hedgehog", ("mammal",), "Erinaceinae", "", 90, "spiny mammal", ("hedgehogs", "urchin"), cps=("1f994",)),
    T("sloth", ("mammal",), "Folivora", "", 80, "slow-moving tree-dwelling mammal", ("sloths", "three-toed sloth"),
      cps=("1f9a5",)),
    # ---------------- birds
    T("chicken", ("galliform",), "Gallus gallus domesticus", "", 180, "domesticated bird",
      ("hen", "rooster", "cock", "chick"), ("chicken",), cps=("1f414", "1f413", "1f424", "1f425")),
    T("turkey", ("galliform",), "Meleagris gallopavo", "species", 110, "large bird native to North America",
      ("wild turkey", "gobbler"), ("wild turkey",), cps=("1f983",)),
    T("peafowl", ("galliform",), "Pavo cristatus", "species", 90, "bird known for its tail feathers",
      ("peacock", "Indian peafowl", "peahen"), ("Indian peafowl",), cps=("1f99a",)),
    T("duck", ("waterfowl",), "Anas platyrhynchos", "species", 140, "waterbird", ("mallard", "drake"),
      ("mallard",), cps=("1f986",)),
    T("goose", ("waterfowl",), "Anser anser", "species", 110, "large waterbird", ("greylag goose", "geese"),
      ("greylag goose",), cps=("1fabf",)),
    T("swan", ("waterfowl",), "Cygnus olor", "species", 110, "large white waterbird", ("mute swan", "swans"),
      ("mute swan",), cps=("1f9a2",)),
    T("penguin", ("bird",), "Spheniscidae", "family", 160, "flightless seabird", ("penguins", "emperor penguin"),
      cps=("1f427",)),
    T("eagle", ("bird",), "Aquila chrysaetos", "species", 150, "large bird of prey", ("golden eagle", "bald eagle"),
      ("golden eagle",), cps=("1f985",)),
    T("owl", ("bird",), "Strigiformes", "order", 150, "nocturnal bird of prey", ("owls", "barn owl"),
      cps=("1f989",)),
    T("parrot", ("bird",), "Psittaciformes", "order", 130, "colourful tropical bird", ("parrots", "macaw"),
      cps=("1f99c",)),
    T("flamingo", ("bird",), "Phoenicopterus", "genus", 110, "pink wading bird", ("flamingos", "greater flamingo"),
      cps=("1f9a9",)),
    T("dove", ("pigeon family",), "Columba livia", "species", 140, "bird of the pigeon family",
      ("pigeon", "rock dove", "dove of peace"), ("rock dove",), cps=("1f54a",)),
    T("dodo", ("pigeon family",), "Raphus cucullatus", "species", 100, "extinct flightless bird of Mauritius",
      ("dodos",), ("dodo",), cps=("1f9a4",)),
    # ---------------- reptiles, amphibians, fish
    T("crocodile", ("reptile",), "Crocodylidae", "family", 150, "large aquatic reptile",
      ("crocodiles", "alligator", "croc"), cps=("1f40a",)),
    T("snake", ("reptile",), "Serpentes", "", 170, "legless reptile", ("serpent", "snakes", "viper"),
      cps=("1f40d",)),
    T("turtle", ("reptile",), "Testudines", "order", 160, "reptile with a shell", ("tortoise", "sea turtle"),
      cps=("1f422",)),
    T("lizard", ("reptile",), "Lacertilia", "", 120, "scaly reptile", ("lizards", "gecko", "iguana"),
      cps=("1f98e",)),
    T("Tyrannosaurus rex", ("dinosaur",), "Tyrannosaurus rex", "species", 130, "large theropod dinosaur",
      ("T. rex", "T-Rex", "tyrannosaur"), ("Tyrannosaurus",), cps=("1f996",)),
    T("sauropod", ("dinosaur",), "Sauropoda", "", 80, "long-necked dinosaur", ("brontosaurus", "diplodocus"),
      cps=("1f995",)),
    T("frog", ("amphibian",), "Anura", "order", 160, "tailless amphibian", ("frogs", "toad", "tree frog"),
      cps=("1f438",)),
    T("shark", ("fish",), "Selachimorpha", "", 150, "cartilaginous fish", ("sharks", "great white shark"),
      cps=("1f988",)),
    T("pufferfish", ("fish",), "Tetraodontidae", "family", 80, "fish that inflates itself",
      ("blowfish", "puffer", "fugu"), cps=("1f421",)),
    T("tropical fish", ("fish",), "", "", 60, "colourful fish of tropical waters kept in aquariums",
      ("aquarium fish", "reef fish", "butterflyfish"), cps=("1f420",)),
    # ---------------- invertebrates
    T("ant", ("hymenopteran",), "Formicidae", "family", 150, "eusocial insect", ("ants", "pismire"),
      cps=("1f41c",)),
    T("honey bee", ("hymenopteran",), "Apis mellifera", "species", 140, "social flying insect that makes honey",
      ("honeybee", "bee", "western honey bee"), ("western honey bee",), cps=("1f41d",)),
    T("ladybird", ("beetle",), "Coccinellidae", "family", 100, "small spotted beetle",
      ("lady beetle", "ladybug", "ladybeetle"), cps=("1f41e",)),
    T("butterfly", ("lepidopteran",), "Rhopalocera", "", 150, "insect with large colourful wings",
      ("butterflies", "monarch butterfly"), cps=("1f98b",)),
    T("caterpillar", ("lepidopteran",), "", "", 70, "larva of a butterfly or moth", ("larva", "worm bug"),
      cps=("1f41b",)),
    T("cricket", ("insect",), "Gryllidae", "family", 80, "chirping insect", ("crickets", "grasshopper"),
      cps=("1f997",)),
    T("cockroach", ("insect",), "Blattodea", "order", 80, "insect pest", ("roach", "cockroaches"),
      cps=("1fab3",)),
    T("housefly", ("dipteran",), "Musca domestica", "species", 90, "common fly", ("fly", "house fly"),
      ("housefly",), cps=("1fab0",)),
    T("mosquito", ("dipteran",), "Culicidae", "family", 110, "biting fly", ("mosquitoes", "gnat"),
      cps=("1f99f",)),
    T("spider", ("arachnid",), "Araneae", "order", 150, "eight-legged arachnid", ("spiders", "tarantula"),
      cps=("1f577",)),
    T("scorpion", ("arachnid",), "Scorpiones", "order", 100, "arachnid with a venomous sting", ("scorpions",),
      cps=("1f982",)),
    T("crab", ("crustacean",), "Brachyura", "", 110, "decapod crustacean", ("crabs", "true crab"),
      cps=("1f980",)),
    T("lobster", ("crustacean",), "Nephropidae", "family", 90, "large marine crustacean", ("lobsters",),
      cps=("1f99e",)),
    T("shrimp", ("crustacean",), "Caridea", "", 90, "small decapod crustacean", ("prawn", "shrimps"),
      cps=("1f990",)),
    T("snail", ("mollusc",), "Gastropoda", "class", 120, "gastropod mollusc with a shell", ("snails", "slug"),
      cps=("1f40c",)),
    T("octopus", ("cephalopod",), "Octopoda", "order", 130, "eight-armed cephalopod", ("octopuses", "octopi"),
      cps=("1f419",)),
    T("squid", ("cephalopod",), "Teuthida", "order", 100, "ten-armed cephalopod", ("calamari", "squids"),
      cps=("1f991",)),
    T("oyster", ("mollusc",), "Ostreidae", "family", 80, "bivalve mollusc", ("oysters", "pearl oyster"),
      cps=("1f9aa",)),
    T("jellyfish", ("cnidarian",), "Medusozoa", "", 100, "free-swimming gelatinous cnidarian",
      ("jellyfishes", "medusa", "sea jelly"), cps=("1fabc",)),
    T("coral", ("cnidarian",), "Anthozoa", "class", 90, "marine invertebrate that builds reefs",
      ("coral reef", "corals"), cps=("1fab8",)),
    T("earthworm", ("animal",), "Lumbricina", "", 80, "segmented worm", ("worm", "worms", "annelid"),
      cps=("1fab1",)),
    # ---------------- plant groups
    T("flowering plant", ("plant",), "Magnoliophyta", "", 200, "plants that produce flowers and seeds",
      ("angiosperm", "angiosperms"), words=("plant", "flower")),
    T("tree", ("plant",), "", "", 220, "perennial woody plant", ("trees",), words=("tree", "nature"), qid="Q10884"),
    T("rose family", ("flowering plant",), "Rosaceae", "family", 80, "family of flowering plants",
      ("rosaceae",), words=("fruit",)),
    T("citrus", ("flowering plant",), "Citrus", "genus", 110, "genus of fruit trees", ("citrus fruit",),
      words=("fruit",)),
    T("gourd family", ("flowering plant",), "Cucurbitaceae", "family", 70, "family of flowering plants",
      ("cucurbits",), words=("fruit", "vegetable")),
    T("nightshade family", ("flowering plant",), "Solanaceae", "family", 70, "family of flowering plants",
      ("nightshades", "solanaceae"), words=("vegetable",)),
    T("grass family", ("flowering plant",), "Poaceae", "family", 100, "family of monocots", ("grasses",),
      words=("cereal", "crop")),
    T("legume family", ("flowering plant",), "Fabaceae", "family", 90, "family of flowering plants",
      ("legumes", "pea family"), words=("vegetable",)),
    T("palm tree", ("flowering plant", "tree"), "Arecaceae", "family", 130, "family of palms",
      ("palm", "palms", "coconut tree"), cps=("1f334",), words=("tree", "tropical")),
    # ---------------- plants
    T("apple", ("rose family",), "Malus domestica", "species", 190, "fruit of the apple tree",
      ("apple tree", "red apple", "green apple"), ("apple",), cps=("1f34e", "1f34f")),
    T("pear", ("rose family",), "Pyrus communis", "species", 120, "fruit tree", ("European pear", "pear tree"),
      ("pear",), cps=("1f350",)),
    T("peach", ("rose family",), "Prunus persica", "species", 120, "fruit tree", ("peach tree", "nectarine"),
      ("peach",), cps=("1f351",)),
    T("cherry", ("rose family",), "Prunus avium", "species", 120, "fruit of the cherry tree",
      ("cherries", "sweet cherry", "wild cherry"), ("sweet cherry",), cps=("1f352",)),
    T("strawberry", ("rose family",), "Fragaria ananassa", "species", 130, "garden strawberry",
      ("garden strawberry", "strawberries"), ("garden strawberry",), cps=("1f353",)),
    T("rose", ("rose family",), "Rosa", "genus", 170, "woody perennial flowering plant", ("roses", "red rose"),
      cps=("1f339",), words=("flower",)),
    T("Japanese cherry", ("rose family",), "Prunus serrulata", "species", 90, "ornamental flowering cherry",
      ("cherry blossom", "sakura", "Japanese flowering cherry"), ("Japanese cherry",), cps=("1f338",),
      words=("flower",)),
    T("tangerine", ("citrus",), "Citrus tangerina", "species", 90, "citrus fruit",
      ("mandarin orange", "mandarin", "orange"), ("tangerine",), cps=("1f34a",)),
    T("lemon", ("citrus",), "Citrus limon", "species", 140, "citrus fruit", ("lemons", "lemon tree"),
      ("lemon",), cps=("1f34b",)),
    T("lime", ("citrus",), "Citrus aurantiifolia", "species", 90, "green citrus fruit", ("key lime", "limes"),
      ("key lime",), cps=("1f34b-200d-1f7e9",)),
    T("melon", ("gourd family",), "Cucumis melo", "species", 100, "sweet fruit", ("cantaloupe", "honeydew"),
      ("muskmelon",), cps=("1f348",)),
    T("watermelon", ("gourd family",), "Citrullus lanatus", "species", 120, "large fruit with red flesh",
      ("water melon",), ("watermelon",), cps=("1f349",)),
    T("cucumber", ("gourd family",), "Cucumis sativus", "species", 110, "vegetable", ("cucumbers", "gherkin"),
      ("cucumber",), cps=("1f952",)),
    T("tomato", ("nightshade family",), "Solanum lycopersicum", "species", 150, "edible berry",
      ("tomatoes", "cherry tomato"), ("tomato",), cps=("1f345",)),
    T("eggplant", ("nightshade family",), "Solanum melongena", "species", 100, "plant with purple fruit",
      ("aubergine", "brinjal"), ("eggplant",), cps=("1f346",)),
    T("potato", ("nightshade family",), "Solanum tuberosum", "species", 150, "starchy tuber",
      ("potatoes", "spud"), ("potato",), cps=("1f954",)),
    T("chili pepper", ("nightshade family",), "Capsicum frutescens", "species", 110, "hot pepper",
      ("hot pepper", "chilli", "red pepper"), ("chili pepper",), cps=("1f336",)),
    T("bell pepper", ("nightshade family",), "Capsicum annuum", "species", 90, "sweet pepper",
      ("sweet pepper", "capsicum", "paprika"), ("bell pepper",), cps=("1fad1",)),
    T("maize", ("grass family",), "Zea mays", "species", 170, "cereal grain", ("corn", "ear of corn", "sweetcorn"),
      ("maize",), cps=("1f33d",)),
    T("rice", ("grass family",), "Oryza sativa", "species", 150, "cereal grain", ("Asian rice", "sheaf of rice",
      "paddy"), ("rice",), cps=("1f33e",)),
    T("peanut", ("legume family",), "Arachis hypogaea", "species", 110, "legume crop", ("groundnut", "peanuts"),
      ("peanut",), cps=("1f95c",)),
    T("pea", ("legume family",), "Pisum sativum", "species", 100, "legume", ("green pea", "pea pod", "peas"),
      ("pea",), cps=("1fadb",)),
    T("clover", ("legume family",), "Trifolium", "genus", 90, "genus of plants", ("shamrock", "four-leaf clover",
      "trefoil"), cps=("1f340", "2618")),
    T("common bean", ("legume family",), "Phaseolus vulgaris", "species", 80, "legume", ("kidney bean", "beans"),
      ("common bean",), cps=("1fad8",)),
    T("tulip", ("flowering plant",), "Tulipa", "genus", 140, "genus of spring flowers", ("tulips",),
      cps=("1f337",), words=("flower",)),
    T("sunflower", ("flowering plant",), "Helianthus annuus", "species", 140, "large flower",
      ("common sunflower", "sunflowers"), ("common sunflower",), cps=("1f33b",), words=("flower",)),
    T("hibiscus", ("flowering plant",), "Hibiscus", "genus", 100, "genus of flowering plants",
      ("rose mallow", "hibiscus flower"), cps=("1f33a",), words=("flower",)),
    T("sacred lotus", ("flowering plant",), "Nelumbo nucifera", "species", 100, "aquatic plant",
      ("lotus", "Indian lotus", "lotus flower"), ("sacred lotus",), cps=("1fab7",), words=("flower",)),
    T("hyacinth", ("flowering plant",), "Hyacinthus orientalis", "species", 70, "spring bulb flower",
      ("common hyacinth", "garden hyacinth"), ("common hyacinth",), cps=("1fabb",), words=("flower",)),
    T("cactus", ("flowering plant",), "Cactaceae", "family", 140, "succulent plant with spines",
      ("cacti", "saguaro", "cactuses"), cps=("1f335",), words=("desert plant",)),
    T("coconut", ("palm tree",), "Cocos nucifera", "species", 110, "palm and its fruit", ("coconut palm",
      "coconuts"), ("coconut palm",), cps=("1f965",), words=("fruit",)),
    T("grape", ("flowering plant",), "Vitis vinifera", "species", 150, "fruit of the grapevine",
      ("grapes", "grapevine", "wine grape"), ("grape vine",), cps=("1f347",), words=("fruit",)),
    T("banana", ("flowering plant",), "Musa", "genus", 160, "elongated edible fruit", ("bananas", "plantain"),
      cps=("1f34c",), words=("fruit",)),
    T("pineapple", ("flowering plant",), "Ananas comosus", "species", 120, "tropical plant", ("ananas",
      "pineapples"), ("pineapple",), cps=("1f34d",), words=("fruit",)),
    T("avocado", ("flowering plant",), "Persea americana", "species", 120, "tree and its fruit",
      ("avocado pear", "alligator pear"), ("avocado",), cps=("1f951",), words=("fruit",)),
    T("mango", ("flowering plant",), "Mangifera indica", "species", 120, "tropical fruit",
      ("mangoes", "mango tree"), ("mango",), cps=("1f96d",), words=("fruit",)),
    T("olive", ("flowering plant",), "Olea europaea", "species", 120, "tree and its fruit",
      ("olives", "olive tree"), ("olive",), cps=("1fad2",), words=("fruit",)),
    T("kiwifruit", ("flowering plant",), "Actinidia deliciosa", "species", 100, "edible berry",
      ("kiwi", "kiwi fruit", "Chinese gooseberry"), ("kiwifruit",), cps=("1f95d",), words=("fruit",)),
    T("blueberry", ("flowering plant",), "Vaccinium corymbosum", "species", 90, "blue berry",
      ("blueberries", "highbush blueberry"), ("highbush blueberry",), cps=("1fad0",), words=("fruit",)),
    T("broccoli", ("flowering plant",), "Brassica oleracea var. italica", "", 100, "green vegetable",
      ("calabrese",), ("broccoli",), cps=("1f966",), words=("vegetable",)),
    T("carrot", ("flowering plant",), "Daucus carota", "species", 130, "root vegetable", ("carrots",),
      ("carrot",), cps=("1f955",), words=("vegetable",)),
    T("garlic", ("flowering plant",), "Allium sativum", "species", 120, "bulb used as a spice",
      ("garlic bulb", "clove of garlic"), ("garlic",), cps=("1f9c4",), words=("vegetable",)),
    T("onion", ("flowering plant",), "Allium cepa", "species", 120, "bulb vegetable", ("onions", "bulb onion"),
      ("onion",), cps=("1f9c5",), words=("vegetable",)),
    T("ginger", ("flowering plant",), "Zingiber officinale", "species", 100, "flowering plant with a spicy root",
      ("ginger root",), ("ginger",), cps=("1fada",), words=("spice",)),
    T("chestnut", ("flowering plant", "tree"), "Castanea sativa", "species", 100, "tree with edible nuts",
      ("sweet chestnut", "chestnuts"), ("sweet chestnut",), cps=("1f330",), words=("nut",)),
    T("maple", ("flowering plant", "tree"), "Acer", "genus", 120, "genus of trees", ("maple tree", "maple leaf"),
      cps=("1f341",), words=("tree", "autumn")),
    T("deciduous tree", ("tree",), "", "", 60, "tree that loses its leaves seasonally", ("broadleaf tree",
      "oak tree"), cps=("1f333",)),
    T("conifer", ("plant", "tree"), "Pinophyta", "", 120, "cone-bearing seed plant", ("evergreen tree", "pine",
      "fir tree", "conifers"), cps=("1f332",)),
    # ---------------- fungi
    T("mushroom", ("fungus",), "", "", 170, "fruiting body of a fungus", ("toadstool", "fly agaric", "champignon"),
      cps=("1f344", "1f344-200d-1f7eb"), words=("mushroom",)),
]  # fmt: skip

# Web distractors: icons of other kinds (by category in the web styles), and a few named after
# animals on purpose. They are never linked to a taxon in the ground truth.
DISTRACTOR_CATEGORIES = ("Objects", "Smileys", "Symbols", "Travel", "Activities", "Food", "Nature")
ANIMAL_NAMED = {  # codepoint -> page words that mention an animal (the web's homonyms)
    "1f32d": "hot dog",  "1f9f8": "teddy bear", "1f3a0": "carousel horse", "1f5b1": "computer mouse",
    "1f984": "unicorn horse", "1f409": "dragon", "1f432": "dragon face", "264b": "cancer zodiac crab",
    "264c": "leo zodiac lion", "2648": "aries zodiac ram", "2649": "taurus zodiac bull",
    "2653": "pisces zodiac fish", "2651": "capricorn zodiac goat", "264f": "scorpius zodiac scorpion",
    "1f3c7": "horse racing", "1f38f": "carp streamer fish", "1f365": "fish cake", "1f364": "fried shrimp",
    "1f357": "poultry leg chicken", "1f953": "bacon pig", "1f36f": "honey pot bee", "1f3a3": "fishing pole fish",
    "1f384": "christmas tree", "1f38b": "tanabata tree", "1f38d": "pine decoration", "1f490": "bouquet of flowers",
    "1f3f5": "rosette flower", "1f95a": "egg", "1f963": "bowl", "1f360": "roasted sweet potato",
    "1f35f": "french fries potato", "1f95e": "pancakes", "1f95f": "dumpling", "1f9c0": "cheese wedge",
}  # fmt: skip
EXCLUDED_CPS = {
    "1f648",
    "1f649",
    "1f64a",
    "1f63a",
    "1f638",
    "1f639",
    "1f63b",
    "1f63c",
    "1f63d",
    "1f640",
    "1f63f",
    "1f63e",
    "1f43d",
    "1f43e",
    "1f423",
    "1f578",
    "1f41a",
    "1f331",
    "1f33f",
    "1f33c",
    "1f4ae",
    "1f940",
    "1f342",
    "1f343",
    "1fab4",
    "1f96c",
    "1f9a0",
    "1fab6",
    "1fabd",
    "1faba",
    "1fab9",
    "1f9ae",
    "1f415-200d-1f9ba",
    "1f408-200d-2b1b",
    "1f426-200d-2b1b",
    "1f426-200d-1f525",
}


# ---------------------------------------------------------------- icon sets


class KitError(Exception):
    """What the kit needs and is missing, in one line for the user."""


def check_tools() -> None:
    """npm (to fetch the icon sets) and cairosvg with Debian's libcairo2 (to rasterise them)."""
    if shutil.which("npm") is None:
        raise KitError(
            "the kit fetches its icon sets with npm: install Node.js and npm (Debian: apt-get install npm)"
        )
    try:
        import cairosvg  # noqa: F401  (loads libcairo when imported)
    except ImportError:
        raise KitError("the kit rasterises SVG with cairosvg: pip install -e '.[bench]'") from None
    except OSError as e:
        raise KitError(f"cairosvg cannot load the cairo library ({e}); apt-get install libcairo2") from None


def fetch_sets(cache: Path, styles=TRAIN_STYLES + HELD_OUT_STYLES) -> dict[str, Path]:
    """`npm pack @iconify-json/NAME` into cache/npm and untar it; returns style -> package dir."""
    npm_dir = cache / "npm"
    npm_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for style in styles:
        pkg = npm_dir / style / "package"
        if not (pkg / "icons.json").exists():
            print(f"  fetching @iconify-json/{style} with npm pack", flush=True)
            res = subprocess.run(
                ["npm", "pack", f"@iconify-json/{style}", "--pack-destination", str(npm_dir)],
                capture_output=True,
                text=True,
            )
            if res.returncode != 0:
                last = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise KitError(
                    f"npm pack @iconify-json/{style} failed: {last}; is the npm registry reachable?"
                )
            tgz = npm_dir / res.stdout.strip().splitlines()[-1]
            tmp = npm_dir / f".{style}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            with tarfile.open(tgz) as tf:
                tf.extractall(tmp, filter="data")
            shutil.rmtree(npm_dir / style, ignore_errors=True)
            tmp.rename(npm_dir / style)
            tgz.unlink()
        out[style] = pkg
    return out


def _squash(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _norm_cp(cp: str) -> str:
    return "-".join(p for p in cp.lower().split("-") if p not in ("fe0f",))


# Names the automatic matching cannot place (fxemoji's own names); None: leave out.
NAME_OVERRIDES = {
    "fxemoji": {
        "bunny": "1f430", "bunnyside": "1f407", "catside": "1f408", "dogside": "1f415", "dragonhead": "1f432",
        "dragonside": "1f409", "evergreen": "1f332", "frontfacingchick": "1f425", "hampster": "1f439",
        "leopardside": "1f406", "mouseside": "1f401", "pigside": "1f416", "pigsnout": "1f43d",
        "spurtingwhale": "1f433", "tigerside": "1f405", "chilipepper": "1f336", "fallingleaf": "1f342",
        "leaffluttering": "1f343", "present": "1f381", "tennisball": "1f3be", "studiomic": "1f399",
        "cat": "1f431", "dog": "1f436", "tiger": "1f42f", "pig": "1f437", "mouse": "1f42d",
        "acorn": None,
    },
}  # fmt: skip


class IconSet:
    def __init__(self, style: str, pkg: Path, name2cp_fluent: dict[str, str] | None = None):
        self.style = style
        data = json.loads((pkg / "icons.json").read_text())
        self.prefix = data["prefix"]
        self.icons = data["icons"]
        self.aliases = data.get("aliases", {})
        self.width = data.get("width", 16)
        self.height = data.get("height", 16)
        self.left = data.get("left", 0)
        self.top = data.get("top", 0)
        meta = json.loads((pkg / "metadata.json").read_text())
        self.category = {n: c for c, names in meta.get("categories", {}).items() for n in names}
        chars = json.loads((pkg / "chars.json").read_text()) if (pkg / "chars.json").exists() else {}
        self.chars = {_norm_cp(k): v for k, v in chars.items()}

    def names(self) -> list[str]:
        return sorted(set(self.icons) | set(self.aliases))

    def resolve(self, name: str):
        """(icon dict, hFlip, vFlip, rotate) following aliases; None for hidden or broken ones."""
        hflip = vflip = False
        rotate = 0
        seen = set()
        while name in self.aliases:
            if name in seen:
                return None
            seen.add(name)
            a = self.aliases[name]
            hflip ^= bool(a.get("hFlip"))
            vflip ^= bool(a.get("vFlip"))
            rotate += int(a.get("rotate", 0))
            name = a["parent"]
        icon = self.icons.get(name)
        if icon is None:
            return None
        hflip ^= bool(icon.get("hFlip"))
        vflip ^= bool(icon.get("vFlip"))
        rotate += int(icon.get("rotate", 0))
        return icon, hflip, vflip, rotate % 4

    def svg(self, name: str) -> str:
        """A full, square SVG document of one icon (its viewBox padded to a square)."""
        r = self.resolve(name)
        if r is None:
            raise KeyError(name)
        icon, hflip, vflip, rotate = r
        left = icon.get("left", self.left)
        top = icon.get("top", self.top)
        w = icon.get("width", self.width)
        h = icon.get("height", self.height)
        body = icon["body"]
        transforms = []
        if hflip:
            transforms.append(f"translate({2 * left + w} 0) scale(-1 1)")
        if vflip:
            transforms.append(f"translate(0 {2 * top + h}) scale(1 -1)")
        if rotate:
            transforms.insert(0, f"rotate({90 * rotate} {left + w / 2} {top + h / 2})")
        if transforms:
            body = f'<g transform="{" ".join(transforms)}">{body}</g>'
        side = max(w, h)
        vx, vy = left - (side - w) / 2, top - (side - h) / 2
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'width="{side}" height="{side}" viewBox="{vx} {vy} {side} {side}">{body}</svg>'
        )

    def png(self, name: str, size: int) -> bytes:
        import cairosvg

        return cairosvg.svg2png(bytestring=self.svg(name).encode(), output_width=size, output_height=size)


class CodepointIndex:
    """Names -> codepoints across the sets: fluent's chars.json, Unicode character names, overrides."""

    def __init__(self, fluent: IconSet):
        self.by_name: dict[str, str] = {}
        for cp, name in sorted(fluent.chars.items(), key=lambda kv: (len(kv[0]), kv[0])):
            self.by_name.setdefault(name, cp)
        self.by_squashed: dict[str, str] = {}
        for c in list(range(0x2190, 0x2C00)) + list(range(0x1F000, 0x1FB00)):
            try:
                self.by_squashed.setdefault(_squash(unicodedata.name(chr(c))), f"{c:x}")
            except ValueError:
                pass
        for name, cp in self.by_name.items():
            self.by_squashed.setdefault(_squash(name), cp)

    def _one(self, name: str) -> str | None:
        if name in self.by_name:
            return self.by_name[name]
        try:
            ch = unicodedata.lookup(name.replace("-", " "))
            if len(ch) == 1:
                return f"{ord(ch):x}"
        except KeyError:
            pass
        return self.by_squashed.get(_squash(name))

    def codepoint(self, style: str, name: str) -> str | None:
        over = NAME_OVERRIDES.get(style, {})
        if name in over:
            return over[name]
        cp = self._one(name)
        if cp is None and re.search(r"-\d+$", name):
            cp = self._one(re.sub(r"-\d+$", "", name))
        return cp


def icons_by_codepoint(sets: dict[str, IconSet], index: CodepointIndex) -> dict[str, dict[str, list[str]]]:
    """style -> codepoint -> names (variants first by name; skin-tone and hidden icons left out)."""
    out: dict[str, dict[str, list[str]]] = {}
    for style, s in sets.items():
        per: dict[str, list[str]] = defaultdict(list)
        if s.chars:
            for cp, name in s.chars.items():
                per[cp].append(name)
        for name in s.names():
            if re.search(r"(skin-tone|-(light|dark|medium|medium-light|medium-dark))$", name):
                continue
            r = s.resolve(name)
            if r is None or r[0].get("hidden"):
                continue
            cp = index.codepoint(style, name)
            if cp and name not in per[cp]:
                per[cp].append(name)
        for cp in per:
            # the plain name first (an alias and its parent are one drawing: keep distinct bodies)
            names, bodies = [], set()
            for n in sorted(per[cp], key=lambda n: (bool(re.search(r"-\d+$", n)), n in s.aliases, n)):
                r = s.resolve(n)
                if r is None:
                    continue
                key = (r[0]["body"], r[1], r[2], r[3])
                if key not in bodies:
                    bodies.add(key)
                    names.append(n)
            per[cp] = names
        out[style] = {cp: ns for cp, ns in per.items() if ns}
    return out


# ---------------------------------------------------------------- the knowledge graph


def assign_ids(taxa: list[T]) -> dict[str, T]:
    by_label: dict[str, T] = {}
    n = 980000001
    for t in taxa:
        if t.label in by_label:
            raise SystemExit(f"duplicate label {t.label!r}")
        if t.qid:
            t.id = t.qid
        else:
            t.id = f"Q{n}"
            n += 1
        by_label[t.label] = t
    for t in taxa:
        for p in t.parents:
            if p not in by_label:
                raise SystemExit(f"{t.label}: unknown parent {p!r}")
    return by_label


def ancestors(t: T, by_label: dict[str, T]) -> list[T]:
    out, todo = [], list(t.parents)
    while todo:
        p = by_label[todo.pop(0)]
        if p not in out:
            out.append(p)
            todo += list(p.parents)
    return out


def words_of(t: T, by_label: dict[str, T]) -> list[str]:
    ws = list(t.words)
    for a in ancestors(t, by_label):
        ws += [w for w in a.words if w not in ws]
    return ws or ["nature"]


KG_HEADER = """\
# The Iconify emoji world: a Wikidata-shaped knowledge graph of the animal, plant and fungus
# classes of the EntityNet quality benchmark (benchmarks/iconify_world.py writes it; do not edit).
#
# Vocabulary as in Wikidata's RDF dumps: rdfs:label / skos:altLabel / schema:description in English,
# wdt:P171 parent taxon (taxa) or wdt:P279 subclass of (classes that are not taxa, and further
# parents), wdt:P31 instance of taxon (Q16521), wdt:P225 taxon name, wdt:P1843 common name,
# wdt:P105 taxon rank, and wikibase:sitelinks on the item's data node (`data:Qn schema:about wd:Qn`).
#
# Identifiers: the roots animal (Q729), plant (Q756) and fungus (Q764), the natural-type classes the
# expansion looks for (mammal Q7377, bird Q5113, reptile Q10811, amphibian Q10908, fish Q152,
# insect Q1390, tree Q10884), the taxon class Q16521 and the ranks are real Wikidata ids. Every id
# from Q980000001 up is SYNTHETIC, a stand-in numbered in table order; do not look them up.
# The taxonomy is simplified textbook biology (intermediate clades omitted); sitelink counts are
# made-up magnitudes (famous animals high), all at least 5 so that the default expansion keeps them.
"""


def _lit(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"@en'


def write_kg(taxa: list[T], by_label: dict[str, T], path: Path) -> None:
    lines = [
        KG_HEADER,
        "@prefix wd: <http://www.wikidata.org/entity/> .",
        "@prefix wdt: <http://www.wikidata.org/prop/direct/> .",
        "@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .",
        "@prefix skos: <http://www.w3.org/2004/02/skos/core#> .",
        "@prefix schema: <http://schema.org/> .",
        "@prefix wikibase: <http://wikiba.se/ontology#> .",
        "@prefix data: <https://www.wikidata.org/wiki/Special:EntityData/> .",
        "",
    ]
    lines.append('wd:Q16521 rdfs:label "taxon"@en ; schema:description "group of organisms"@en .')
    lines.append("data:Q16521 schema:about wd:Q16521 ; wikibase:sitelinks 90 .\n")
    for rank, q in RANKS.items():
        lines.append(f'wd:{q} rdfs:label "{rank}"@en ; schema:description "taxonomic rank"@en .')
        lines.append(f"data:{q} schema:about wd:{q} ; wikibase:sitelinks 80 .\n")
    for t in taxa:
        s = [f"wd:{t.id} rdfs:label {_lit(t.label)}"]
        if t.description:
            s.append(f"schema:description {_lit(t.description)}")
        s += [f"skos:altLabel {_lit(a)}" for a in t.aliases]
        if t.taxon:
            s.append("wdt:P31 wd:Q16521")
            s.append(f'wdt:P225 "{t.taxon}"')
        if t.rank:
            s.append(f"wdt:P105 wd:{RANKS[t.rank]}")
        for i, p in enumerate(t.parents):
            via = ("P171" if t.taxon and by_label[p].taxon else "P279") if i == 0 else "P279"
            s.append(f"wdt:{via} wd:{by_label[p].id}")
        s += [f"wdt:P1843 {_lit(c)}" for c in t.common]
        lines.append(" ;\n    ".join(s) + " .")
        lines.append(f"data:{t.id} schema:about wd:{t.id} ; wikibase:sitelinks {t.sitelinks} .\n")
    path.write_text("\n".join(lines), encoding="utf-8")


# ---------------------------------------------------------------- web texts


def humanise(name: str) -> str:
    return re.sub(r"-\d+$", "", name).replace("-", " ")


def _pick(rng: random.Random, weighted):
    total = sum(w for w, _ in weighted)
    x = rng.random() * total
    for w, v in weighted:
        x -= w
        if x <= 0:
            return v
    return weighted[-1][1]


GENERIC = ("cartoon", "vector", "clipart", "drawing", "illustration", "icon", "emoji", "sticker", "flat")


def taxon_texts(
    rng: random.Random, t: T, words: list[str], icon_name: str, style: str, cp: str, wrong: str
) -> tuple[str, str]:
    """A web-like (alt text, page text) of one picture of taxon `t`."""
    names = [t.label, *t.aliases, *t.common]
    name = _pick(rng, [(4, t.label), (3, rng.choice(names)), (3, humanise(icon_name))])
    styl = STYLE_NAMES[style]
    word = rng.choice(words)
    g1, g2 = rng.sample(GENERIC, 2)
    code = cp.split("-")[0]
    plain = re.sub(r"-\d+$", "", icon_name)
    title = _pick(rng, [
        (10, f"{humanise(icon_name)} emoji"),
        (8, f"{humanise(icon_name).title()} emoji on {styl}"),
        (6, f"{styl} {humanise(icon_name)}"),
        (7, f"cute {name} clipart vector illustration"),
        (5, f"{name} {g1} {g2}"),
        (5, f"{name} icon"),
        (4, f"{name}"),
        (4, f"emoji_u{code}.png"),
        (3, f"{code}.png"),
        (3, f"{style}-{plain}.svg"),
        (5, f"{word} stickers pack"),
        (4, f"{word} icons set"),
        (4, ", ".join(t.aliases[:2]) if t.aliases else t.label),
        (3, f"{t.taxon} {g1}" if t.taxon else f"{t.label} {g1}"),
        (3, f"{wrong} emoji"),
        (2, f"{wrong} {g1}"),
        (3, f"funny {word} {g1}"),
    ])  # fmt: skip
    content = _pick(rng, [
        (20, ""),
        (8, f"Free {styl} emoji. Download the {humanise(icon_name)} emoji as PNG or SVG."),
        (6, f"{name} emoji meaning: {t.description}." if t.description else f"{name} emoji"),
        (6, f"flat {g1} illustration, {g2} style, isolated on white background"),
        (5, f"{word} emoji set for chat and social media"),
        (5, f"Copy and paste {humanise(icon_name)} emoji. Unicode U+{code.upper()}."),
        (4, f"{rng.choice(names)} {word} image"),
        (4, f"{g1} {g2} {word} collection"),
        (2, f"{wrong} and {name} stickers"),
    ])  # fmt: skip
    return title, content


def distractor_texts(
    rng: random.Random, icon_name: str, style: str, category: str, cp: str, homonym: str | None
) -> tuple[str, str]:
    styl = STYLE_NAMES[style]
    h = humanise(icon_name)
    if homonym and rng.random() < 0.7:
        h = homonym
    g1, g2 = rng.sample(GENERIC, 2)
    code = cp.split("-")[0]
    cat = category.split(" ")[0].lower()
    title = _pick(rng, [
        (10, f"{h} emoji"),
        (8, f"{h.title()} emoji on {styl}"),
        (6, f"{h} {g1} {g2}"),
        (5, f"cartoon {h} clipart"),
        (5, f"{h} icon vector"),
        (4, f"emoji_u{code}.png"),
        (3, f"{cat} stickers pack"),
        (3, f"{styl} {h}"),
        (3, f"{g1} {g2} illustration"),
    ])  # fmt: skip
    content = _pick(rng, [
        (20, ""),
        (8, f"Free {styl} emoji. Download the {h} emoji as PNG or SVG."),
        (6, f"flat {g1} illustration, {g2} style, isolated on white background"),
        (5, f"{cat} emoji set for chat and social media"),
        (5, f"Copy and paste {h} emoji. Unicode U+{code.upper()}."),
        (4, f"{g1} {g2} drawing of a {h}"),
    ])  # fmt: skip
    return title, content


# ---------------------------------------------------------------- images


def _rgba(png: bytes):
    from PIL import Image

    im = Image.open(io.BytesIO(png))
    im.load()
    return im.convert("RGBA")


def _background(rng: random.Random, size: tuple[int, int], kind: str):
    from PIL import Image

    w, h = size
    if kind == "white":
        return Image.new("RGB", size, (255, 255, 255))
    c1 = tuple(rng.randint(60, 255) for _ in range(3))
    if kind == "colour":
        return Image.new("RGB", size, c1)
    import numpy as np

    c2 = np.array([rng.randint(60, 255) for _ in range(3)], np.float32)
    a = np.array(c1, np.float32)
    if rng.random() < 0.5:
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None] * np.ones((1, w, 1), np.float32)
    else:
        t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 1), np.float32)
    return Image.fromarray((a * (1 - t) + c2 * t).astype(np.uint8), "RGB")


def web_variant(rng: random.Random, base) -> tuple[bytes, str, int, int]:
    """One web picture of an RGBA icon: scaled, placed, maybe rotated/flipped, on a background."""
    from PIL import Image, ImageOps

    side = rng.choice((96, 112, 128, 144, 160, 192, 224, 256))
    w, h = side, side
    if rng.random() < 0.25:
        w = int(side * rng.uniform(1.1, 1.5))
    scale = rng.uniform(0.55, 0.98)
    s = max(24, int(min(w, h) * scale))
    icon = base.resize((s, s), Image.LANCZOS)
    if rng.random() < 0.3:
        icon = ImageOps.mirror(icon)
    if rng.random() < 0.35:
        icon = icon.rotate(rng.uniform(-15, 15), resample=Image.BICUBIC, expand=True)
    icon = icon.crop(icon.getbbox() or (0, 0, icon.width, icon.height)) if rng.random() < 0.1 else icon
    s_w, s_h = icon.size
    x = rng.randint(0, max(0, w - s_w))
    y = rng.randint(0, max(0, h - s_h))
    bg = _pick(rng, [(3, "transparent"), (3, "white"), (2, "colour"), (2, "gradient")])
    out = io.BytesIO()
    if bg == "transparent":
        canvas = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        canvas.alpha_composite(icon, (min(x, w - 1), min(y, h - 1)) if s_w <= w and s_h <= h else (0, 0))
        canvas.save(out, "PNG")
        return out.getvalue(), "png", w, h
    canvas = _background(rng, (w, h), bg).convert("RGBA")
    canvas.alpha_composite(icon.crop((0, 0, min(s_w, w), min(s_h, h))), (x, y))
    canvas = canvas.convert("RGB")
    if bg == "white" and rng.random() < 0.5:
        canvas.save(out, "PNG")
        return out.getvalue(), "png", w, h
    canvas.save(out, "JPEG", quality=rng.choice((75, 85, 92)))
    return out.getvalue(), "jpg", w, h


def collage(rng: random.Random, icons: list) -> tuple[bytes, int, int]:
    from PIL import Image

    n = len(icons)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cell = rng.choice((72, 80, 96))
    w, h = cols * cell, rows * cell
    canvas = Image.new("RGBA", (w, h), (255, 255, 255, 255))
    for i, im in enumerate(icons):
        r, c = divmod(i, cols)
        canvas.alpha_composite(im.resize((cell - 8, cell - 8), Image.LANCZOS), (c * cell + 4, r * cell + 4))
    out = io.BytesIO()
    canvas.convert("RGB").save(out, "JPEG", quality=88)
    return out.getvalue(), w, h


# ---------------------------------------------------------------- the kit


@dataclass
class Kit:
    root: Path
    kg: Path
    web: Path
    eval_sets: dict[str, Path]  # fxemoji, streamline-emojis, merged
    truth: dict[str, list[str]]  # image id -> true entity ids ([] for distractors)
    ancestors: dict[str, list[str]]  # entity id -> ancestor ids
    labels: dict[str, str]  # entity id -> label
    stats: dict


def kit_key(limit_classes: int, seed: int) -> str:
    # bump KIT_VERSION whenever the builder changes what it makes (the table is part of the key)
    src = json.dumps(
        [KIT_VERSION, limit_classes, seed, [t.__dict__ for t in TAXA]], sort_keys=True, default=str
    )
    return hashlib.sha1(src.encode()).hexdigest()[:10]


def build(cache: Path = DEFAULT_CACHE, limit_classes: int = 0, seed: int = 0, log=print) -> Kit:
    """Build the kit under cache/kit-<key>/ (or reuse a finished one) and return where it lies."""
    from tqdm import tqdm

    cache = Path(cache).expanduser()
    root = cache / f"kit-{kit_key(limit_classes, seed)}"
    if (root / "DONE").exists():
        return load(root)
    log(f"building the Iconify emoji world in {root}")
    check_tools()
    started = time.time()
    pkgs = fetch_sets(cache)
    sets = {s: IconSet(s, p) for s, p in pkgs.items()}
    index = CodepointIndex(sets["fluent-emoji-flat"])
    by_cp = icons_by_codepoint(sets, index)
    taxa = [T(**{k: v for k, v in t.__dict__.items() if k != "id"}) for t in TAXA]
    by_label = assign_ids(taxa)
    with_icons = [t for t in taxa if any(cp in by_cp[s] for s in TRAIN_STYLES for cp in t.cps)]
    eval_classes = [t for t in with_icons if any(cp in by_cp[s] for s in HELD_OUT_STYLES for cp in t.cps)]
    if limit_classes:
        eval_classes = eval_classes[:limit_classes]
        keep = {t.label for t in eval_classes} | {"animal", "plant", "fungus"}
        for t in eval_classes:
            keep |= {a.label for a in ancestors(t, by_label)}
        taxa = [t for t in taxa if t.label in keep]
        by_label = {t.label: t for t in taxa}
        with_icons = [t for t in with_icons if t.label in keep]
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "web" / "img").mkdir(parents=True)
    write_kg(taxa, by_label, tmp / "kg.ttl")
    rng = random.Random(seed)
    render_cache: dict[tuple[str, str, int], bytes] = {}

    def png(style: str, name: str, size: int) -> bytes:
        k = (style, name, size)
        if k not in render_cache:
            render_cache[k] = sets[style].png(name, size)
        return render_cache[k]

    # ---- the web: taxon pictures
    docs: list[dict] = []
    truth: dict[str, list[str]] = {}

    def add(
        data: bytes,
        ext: str,
        w: int,
        h: int,
        title: str,
        content: str,
        qids: list[str],
        kind: str,
        style: str,
        cp: str,
    ) -> None:
        image_id = hashlib.sha1(data).hexdigest()[:16]
        if image_id in truth:
            return
        (tmp / "web" / "img" / f"{image_id}.{ext}").write_bytes(data)
        docs.append({"id": image_id, "ext": ext, "width": w, "height": h, "title": title, "content": content,
                     "kind": kind, "style": style, "cp": cp})  # fmt: skip
        truth[image_id] = qids

    cp_owner = {cp: t for t in taxa for cp in t.cps}
    living_labels = [t.label for t in with_icons]
    icon_pool: dict[str, list] = defaultdict(list)  # style -> [(taxon, RGBA image)] for collages
    for t in tqdm(with_icons, desc="web: taxa", unit="class", file=sys.stderr, disable=None):
        words = words_of(t, by_label)
        for style in TRAIN_STYLES:
            for cp in t.cps:
                names = by_cp[style].get(cp)
                if not names:
                    continue
                name = names[0]  # one icon per codepoint per set (variants like fox-face-1/-2 dropped)
                base = _rgba(png(style, name, 256))
                icon_pool[style].append((t, base))
                for _ in range(rng.randint(*VARIANTS_PER_ICON)):
                    data, ext, w, h = web_variant(rng, base)
                    wrong = rng.choice([x for x in living_labels if x != t.label])
                    title, content = taxon_texts(rng, t, words, name, style, cp, wrong)
                    add(data, ext, w, h, title, content, [t.id], "taxon", style, cp)
    n_taxon_images = len(docs)
    # ---- distractors: other categories of the web styles, about as many images in total
    pool = []
    for style in TRAIN_STYLES:
        s = sets[style]
        for cp, names in by_cp[style].items():
            if cp in cp_owner or cp in EXCLUDED_CPS or cp.split("-")[0] in ("1f1e6",):
                continue
            cat = s.category.get(names[0], "")
            if not cat or cat.startswith(("Flags", "People", "Modifiers")):
                continue
            if cat.startswith(("Animals", "Nature")) and cp not in ANIMAL_NAMED:
                try:
                    uname = unicodedata.name(chr(int(cp, 16))) if "-" not in cp else ""
                except ValueError:
                    uname = ""
                # weather, sky and landscape are fine distractors; unlisted living things are not
                if not re.search(
                    r"MOON|SUN|STAR|CLOUD|RAIN|SNOW|FIRE|DROPLET|WAVE|RAINBOW|GLOBE|COMET|"
                    r"TORNADO|FOG|LIGHTNING|VOLTAGE|SPARKLE|DIZZY|COLLISION|DASH|SWEAT|UMBRELLA|"
                    r"CYCLONE|SNOWMAN|WIND",
                    uname,
                ):
                    continue
            pool.append((style, cp, names[0], cat))
    rng.shuffle(pool)
    homonyms = [p for p in pool if p[1] in ANIMAL_NAMED]
    others = [p for p in pool if p[1] not in ANIMAL_NAMED]
    per_icon = 3
    chosen = homonyms + others[: max(0, n_taxon_images // per_icon - len(homonyms))]
    for style, cp, name, cat in tqdm(
        chosen, desc="web: distractors", unit="icon", file=sys.stderr, disable=None
    ):
        try:
            base = _rgba(png(style, name, 256))
        except Exception:  # noqa: BLE001 (an icon cairosvg cannot draw is simply not on the web)
            continue
        for _ in range(per_icon + (1 if cp in ANIMAL_NAMED else 0)):
            data, ext, w, h = web_variant(rng, base)
            title, content = distractor_texts(rng, name, style, cat, cp, ANIMAL_NAMED.get(cp))
            add(data, ext, w, h, title, content, [], "distractor", style, cp)
    n_distractors = len(docs) - n_taxon_images
    # ---- collages and sets whose texts name many taxa
    for _ in range(COLLAGES if not limit_classes else max(4, COLLAGES // 5)):
        style = rng.choice(TRAIN_STYLES)
        k = rng.randint(4, 9)
        picks = rng.sample(icon_pool[style], min(k, len(icon_pool[style])))
        data, w, h = collage(rng, [im for _, im in picks])
        shown = [t.label for t, _ in picks]
        named = list(
            dict.fromkeys(shown + rng.sample(living_labels, min(len(living_labels), rng.randint(3, 8))))
        )
        rng.shuffle(named)
        word = rng.choice(["animal", "nature", "fruit", "plant", "cute animals", "zoo", "farm", "emoji"])
        title = _pick(
            rng,
            [
                (3, f"{word} emoji set: {', '.join(named)}"),
                (2, f"{STYLE_NAMES[style]} {word} icons collection"),
                (2, f"big {word} clipart bundle vector illustration cartoon drawing"),
            ],
        )
        content = f"{len(named)} icons: " + ", ".join(named) + ". Free vector clipart, cartoon drawing set."
        add(data, "jpg", w, h, title, content, sorted({by_label[x].id for x in shown}), "collage", style, "")
    n_collages = len(docs) - n_taxon_images - n_distractors
    with open(tmp / "web" / "index.jsonl", "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    # ---- held-out evaluation ImageFolders (RGBA PNGs exactly as cairosvg renders them)
    per_set: dict[str, Counter] = {}
    for style in HELD_OUT_STYLES + ("merged",):
        per_set[style] = Counter()
    for t in tqdm(eval_classes, desc="eval sets", unit="class", file=sys.stderr, disable=None):
        for style in HELD_OUT_STYLES:
            jobs = []
            for cp in t.cps:
                for vi, name in enumerate(by_cp[style].get(cp, [])):
                    jobs.append((name, vi))
            plan = []
            if jobs:
                first = jobs[0][0]
                plan = [(first, 128), (first, 224)]
                extra = [n for n, _ in jobs[1:]]
                if extra:
                    plan.append((extra[0], 160))
            for name, size in plan[:3]:
                data = png(style, name, size)
                for target in (style, "merged"):
                    d = tmp / "eval" / target / t.label
                    d.mkdir(parents=True, exist_ok=True)
                    fn = f"{style}-{name}-{size}.png" if target == "merged" else f"{name}-{size}.png"
                    (d / fn).write_bytes(data)
                    per_set[target][t.label] += 1
    for target in per_set:
        d = tmp / "eval" / target
        if d.is_dir():
            lines = [f"{c.name}\t{by_label[c.name].id}" for c in sorted(d.iterdir()) if c.is_dir()]
            (d / "labels.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    anc = {t.id: [a.id for a in ancestors(t, by_label)] for t in taxa}
    labels = {t.id: t.label for t in taxa}
    stats = {
        "kit_version": KIT_VERSION,
        "classes_in_kg": len(taxa),
        "classes_with_web_images": len(with_icons),
        "eval_classes": len(eval_classes),
        "eval_classes_per_set": {k: len(v) for k, v in per_set.items()},
        "eval_images_per_set": {k: sum(v.values()) for k, v in per_set.items()},
        "web_images": len(docs),
        "web_taxon_images": n_taxon_images,
        "web_distractor_images": n_distractors,
        "web_collages": n_collages,
        "web_bytes": sum((tmp / "web" / "img" / f"{d['id']}.{d['ext']}").stat().st_size for d in docs),
        "train_styles": list(TRAIN_STYLES),
        "held_out_styles": list(HELD_OUT_STYLES),
        "limit_classes": limit_classes,
        "seed": seed,
        "build_seconds": round(time.time() - started, 1),
    }
    (tmp / "truth.json").write_text(json.dumps({"truth": truth, "ancestors": anc, "labels": labels}))
    (tmp / "kit.json").write_text(json.dumps(stats, indent=2))
    (tmp / "DONE").write_text("ok\n")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    log(f"kit built in {stats['build_seconds']:.0f} s")
    return load(root)


def load(root: Path) -> Kit:
    t = json.loads((root / "truth.json").read_text())
    return Kit(
        root=root,
        kg=root / "kg.ttl",
        web=root / "web",
        eval_sets={s: root / "eval" / s for s in (*HELD_OUT_STYLES, "merged")},
        truth=t["truth"],
        ancestors=t["ancestors"],
        labels=t["labels"],
        stats=json.loads((root / "kit.json").read_text()),
    )


# ---------------------------------------------------------------- the search engine and image host

TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    # "-drawing" is just "drawing": this engine, like many, does not honour exclusions
    return TOKEN.findall(text.casefold())


class SearchIndex:
    """BM25 over each page's text (alt text + page text), OR over the query's words, plus a bonus
    for pages holding the whole query as a phrase; results by score, then by id."""

    def __init__(self, docs: list[dict], k1: float = 1.2, b: float = 0.75):
        self.docs = docs
        self.k1, self.b = k1, b
        self.toks = [tokens(f"{d['title']} {d['content']}") for d in docs]
        self.avg = sum(len(t) for t in self.toks) / max(1, len(self.toks))
        self.postings: dict[str, dict[int, int]] = defaultdict(dict)
        for i, ts in enumerate(self.toks):
            for tok, n in Counter(ts).items():
                self.postings[tok][i] = n
        n = len(docs)
        self.idf = {t: math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5)) for t, p in self.postings.items()}

    def search(self, query: str) -> list[dict]:
        q = list(dict.fromkeys(tokens(query)))
        scores: dict[int, float] = defaultdict(float)
        for tok in q:
            for i, tf in self.postings.get(tok, {}).items():
                norm = self.k1 * (1 - self.b + self.b * len(self.toks[i]) / self.avg)
                scores[i] += self.idf[tok] * tf * (self.k1 + 1) / (tf + norm)
        phrase = " ".join(tokens(query))
        if phrase and len(q) > 1:
            for i in list(scores):
                if f" {phrase} " in f" {' '.join(self.toks[i])} ":
                    scores[i] *= 1.5
        order = sorted(scores, key=lambda i: (-scores[i], self.docs[i]["id"]))
        return [self.docs[i] for i in order]


class IconifyWeb:
    """The kit's web on 127.0.0.1: `GET /search?q=…&format=json&categories=images&pageno=N`
    (SearXNG's JSON shape, 20 results a page), `/img/<id>.png|.jpg`, `/robots.txt` (allow all)."""

    PAGE = 20

    def __init__(self, web_dir: Path, port: int = 0):
        self.dir = Path(web_dir)
        self.docs = [
            json.loads(x) for x in (self.dir / "index.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        self.by_id = {d["id"]: d for d in self.docs}
        self.index = SearchIndex(self.docs)
        self.searches = 0
        self.fetches = 0
        self._lock = threading.Lock()
        web = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/robots.txt":
                    return self.send(200, b"User-agent: *\nAllow: /\n", "text/plain")
                if url.path == "/search":
                    with web._lock:
                        web.searches += 1
                    params = dict(urllib.parse.parse_qsl(url.query))
                    return self.send(
                        200, web.search_json(params, self.headers.get("Host", "")), "application/json"
                    )
                m = re.fullmatch(r"/img/([0-9a-f]{16})\.(png|jpg)", url.path)
                if m and m.group(1) in web.by_id and web.by_id[m.group(1)]["ext"] == m.group(2):
                    with web._lock:
                        web.fetches += 1
                    data = (web.dir / "img" / f"{m.group(1)}.{m.group(2)}").read_bytes()
                    return self.send(200, data, "image/png" if m.group(2) == "png" else "image/jpeg")
                if url.path.startswith("/page/"):
                    d = web.by_id.get(url.path[6:])
                    if d:
                        html = f"<html><body><h1>{d['title']}</h1><p>{d['content']}</p></body></html>"
                        return self.send(200, html.encode(), "text/html; charset=utf-8")
                return self.send(404, b"not found", "text/plain")

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", port), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def search_json(self, params: dict, host: str) -> bytes:
        if params.get("format") != "json":
            return json.dumps({"error": "format=json required"}).encode()
        try:
            page = max(1, int(params.get("pageno", "1") or 1))
        except ValueError:
            page = 1
        q = params.get("q", "")
        hits = self.index.search(q)
        chunk = hits[(page - 1) * self.PAGE : page * self.PAGE]
        base = f"http://{host}" if host else self.base_url
        return json.dumps({
            "query": q,
            "number_of_results": len(hits),
            "results": [
                {
                    "url": f"{base}/page/{d['id']}",
                    "img_src": f"{base}/img/{d['id']}.{d['ext']}",
                    "title": d["title"],
                    "content": d["content"],
                    "resolution": f"{d['width']}x{d['height']}",
                    "engine": "iconifyweb",
                    "template": "images.html",
                }
                for d in chunk
            ],
        }).encode()  # fmt: skip

    def __enter__(self) -> IconifyWeb:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=str(DEFAULT_CACHE))
    ap.add_argument("--limit-classes", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--serve", action="store_true", help="serve the web until interrupted")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        kit = build(Path(args.cache), args.limit_classes, args.seed)
    except KitError as e:
        print(f"iconify_world: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(kit.stats, indent=2))
    print(f"kit: {kit.root}")
    if args.serve:
        with IconifyWeb(kit.web, args.port) as web:
            print(f"serving {len(web.docs):,} images at {web.base_url} (Ctrl-C stops)", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
