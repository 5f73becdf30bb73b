"""English word lists of the built-in corpus (pure data, written for attnlab).

Every list is ordered roughly from common to rare: the generator samples with a Zipf-like
weight by position, so the first words of a list are the frequent ones. A noun is written
`singular` or `singular/plural` when the plural is irregular; a verb is `base`, `base/past`
or `base/past/ing` when those forms are irregular (third person -s is always derived).

Noun classes (one letter each, used by verbs and adjectives to select their arguments):
P person, A animal, F food, D drink, T thing, L place, S speech / idea.
Words whose singular and plural are the same (sheep, fish, deer) and verbs whose past equals
their base (read, put, cut) are left out on purpose: the target language marks number and
tense, so the English side must show them or the translation would not be a function.
"""

from __future__ import annotations

NOUNS: dict[str, str] = {
    "P": """
        man/men woman/women child/children boy girl farmer merchant teacher student doctor
        king queen soldier friend mother father brother sister son daughter baker
        fisherman/fishermen hunter sailor driver singer dancer writer poet painter priest
        lawyer nurse worker builder carpenter tailor thief/thieves stranger neighbor traveler
        prince princess knight shepherd miller potter weaver blacksmith clerk banker pilot
        captain gardener hero/heroes villager scholar monk nun servant master guest wizard
        witch giant chief elder baby uncle aunt cousin grandmother grandfather husband
        wife/wives widow beggar messenger minister mayor officer musician actor engineer
        scientist pirate lady gentleman/gentlemen lord emperor empress boxer prisoner surgeon
        athlete member waiter player postman/postmen caveman/cavemen dentist librarian
        shopkeeper innkeeper woodcutter sculptor jeweler tourist pilgrim orphan bride judge
        guard referee president shoemaker fiddler hermit peasant butcher mason goldsmith
        nephew niece grandson granddaughter firefighter photographer journalist detective
        inventor sheriff governor architect astronaut cashier janitor magician acrobat juggler
        clown chef
        """,
    "A": """
        dog cat horse cow pig goat chicken duck bird fox wolf/wolves bear lion tiger rabbit
        rat snake frog owl eagle crow sparrow camel donkey elephant monkey goose/geese hen
        ox/oxen bee ant spider butterfly turtle whale dolphin shark parrot squirrel hedgehog
        badger beaver otter lizard crocodile zebra giraffe kangaroo penguin swan pigeon lamb
        calf/calves puppy kitten mule bull raven beetle moth toad falcon heron panther
        ostrich peacock flamingo gorilla leopard hyena koala walrus octopus crab lobster snail
        worm wasp
        """,
    "F": """
        bread apple pear orange banana grape plum cherry peach lemon melon onion carrot
        potato/potatoes tomato/tomatoes cabbage egg cake pie cookie biscuit sausage nut
        walnut fig olive mushroom pumpkin cucumber pepper bean pea sandwich pancake dumpling
        muffin cheese soup strawberry coconut almond apricot turnip pastry pizza noodle
        cracker waffle pretzel omelet toast lentil raisin radish pudding tart bun cupcake lime
        mango/mangoes avocado
        """,
    "D": """
        water wine tea coffee juice milk beer lemonade cider broth
        """,
    "T": """
        book box bag basket cup bowl plate knife/knives spoon fork bottle jar hammer rope
        chair table bed lamp candle mirror clock coin hat coat shoe boot glove shirt dress
        scarf/scarves umbrella ball toy doll kite drum flute guitar violin piano bell sword shield
        arrow spear axe shovel ladder bucket blanket pillow carpet curtain map picture photo
        newspaper pencil envelope ticket wallet purse necklace bracelet crown flag oar wheel
        cart wagon boat ship car truck bicycle radio phone computer camera machine engine
        tool needle thread button brush comb towel soap pot pan kettle tray lantern sack
        barrel crate feather stone paper ink notebook keyboard screen telescope microscope
        racket ribbon gift diamond pearl statue vase cage saddle anchor compass door lock
        plank finger hand eye ear nose tooth/teeth foot/feet head heart flower
        branch seed suitcase receipt motor switch moon calendar diary pump net treasure
        gold stove page helmet medal trumpet sofa desk shelf/shelves bench spade rake whip flask
        goblet jug broom mat lid mask puppet marble quilt chain hook magnet globe scroll trophy
        """,
    "L": """
        market school house garden village city town forest river mountain hill lake sea
        beach field farm road bridge street church temple castle palace tower harbor station
        library museum hospital shop bakery kitchen room hall cave island valley desert
        meadow orchard stable barn mill fountain park yard prison theater factory office
        hotel inn tavern cellar attic cottage hut tent camp coast cliff pond swamp jungle
        tree stadium sky stream gate classroom courtyard lighthouse chapel workshop square
        pharmacy garage greenhouse vineyard canyon glacier volcano/volcanoes farmhouse fortress
        cathedral monastery embassy airport pier cabin bedroom balcony corridor
        """,
    "S": """
        story song poem message idea question secret plan dream joke lesson rule law promise
        word name riddle prayer legend tale truth report speech game mistake trick
        recipe proverb rumor alphabet concert trial rhyme verse lullaby lecture puzzle fable
        anthem motto
        """,
}

# Ambiguous nouns: one English word, two senses with different target words. Each sense is
# `class gloss : cue cue ...`; a sentence holding the word also holds a cue of exactly one
# sense (a noun, anywhere in the sentence), and that sense is the translation.
AMBIGUOUS: dict[str, tuple[str, str]] = {
    "bank": ("L money : banker clerk coin wallet", "L shore : river fisherman boat otter"),
    "bat": ("A flyer : cave owl barn moth", "T club : ball athlete stadium player"),
    "crane": ("A stork : lake swamp pond heron", "T hoist : builder engineer factory tower"),
    "plant": ("T herb : garden gardener flower seed", "L works : worker engine machine"),
    "match": ("S contest : referee player stadium athlete", "T firestick : candle lantern stove"),
    "spring": ("L source : valley meadow stream", "T coil : clock engine motor"),
    "mouse/mice": ("A rodent : cat cheese barn", "T pointer : computer keyboard screen"),
    "seal": ("A sealion : sea beach penguin whale", "T stamp : envelope king queen emperor"),
    "key": ("T doorkey : door lock gate", "T pianokey : piano musician trumpet"),
    "letter": ("T mail : envelope postman messenger", "S glyph : alphabet page word"),
    "nail": ("T spike : hammer carpenter plank", "T claw : finger hand"),
    "pen": ("T quill : ink paper notebook", "L fold : pig goat shepherd"),
    "trunk": ("T stem : branch forest woodcutter", "T chest : traveler suitcase hotel"),
    "palm": ("L palmtree : island beach coconut", "T hollow : hand finger"),
    "bill": ("T beak : duck parrot bird", "T invoice : waiter receipt shopkeeper"),
    "fan": ("P admirer : singer actor concert", "T blower : motor switch"),
    "coach": ("P trainer : athlete referee player", "T carriage : horse wheel driver"),
    "star": ("T sun : sky telescope moon", "P celebrity : theater camera actor"),
    "date": ("F datefruit : camel desert", "S appointment : calendar diary"),
    "ring": ("T jewel : finger jeweler diamond", "L arena : boxer referee"),
    "bow": ("T longbow : arrow hunter", "T knot : ribbon gift dress"),
    "port": ("L haven : ship sailor captain", "D portwine : cellar bottle tavern"),
    "tank": ("T cistern : water pump", "T armor : soldier officer"),
    "court": ("L tribunal : judge lawyer prisoner trial", "L pitch : racket net"),
    "organ": ("T pipes : church priest musician", "T viscus : surgeon hospital"),
    "pupil": ("P learner : teacher school classroom", "T iris : eye mirror"),
    "jam": ("F preserve : bread strawberry toast", "S traffic : car truck road"),
    "cell": ("L dungeon : prisoner guard prison", "T cytoplasm : microscope scientist"),
}

# Verb groups: "SUBJECT>OBJECT[>RECIPIENT] : verbs". Classes as above; an empty object means
# intransitive, "go" marks a motion verb with an optional goal ("to the market").
VERBS: dict[str, str] = {
    "PA>": """
        sleep/slept laugh smile cry wait rest work play pray shout dance jump sit/sat/sitting
        stand/stood fall/fell hide/hid grow/grew sneeze cough yawn wake/woke fight/fought
        hunt swim/swam/swimming climb escape disappear listen breathe whistle tremble shiver
        kneel/knelt sing/sang nod/nodded blink sigh snore relax hesitate complain agree
        vanish float sink/sank bleed/bled
        """,
    "PA>go": """
        go/went run/ran/running walk drive/drove ride/rode travel/travelled/travelling return
        come/came hurry sail fly/flew move march wander crawl rush jog/jogged hike stroll
        flee/fled dash limp
        """,
    "PA>FD": "eat/ate drink/drank taste swallow smell share",
    "P>F": "cook bake fry peel slice chop/chopped",
    "P>D": "pour",
    "P>FDTA": """
        buy/bought sell/sold bring/brought carry find/found want need keep/kept steal/stole
        lose/lost take/took catch/caught collect count choose/chose order borrow wash
        hold/held drop/dropped throw/threw pull push lift deliver pack weigh fetch
        grab/grabbed gather store sort trade examine inspect
        """,
    "P>T": """
        build/built make/made fix break/broke open close paint repair use sew carve polish
        mend burn fill clean sharpen wrap/wrapped tie bend/bent decorate design measure
        hang/hung shake/shook tear/tore wipe scrub/scrubbed kick
        """,
    "PA>PAFDTL": """
        see/saw watch notice like love hate fear remember forget/forgot/forgetting admire
        hear/heard touch ignore prefer/preferred imagine draw/drew observe recognize
        """,
    "PA>PA": "follow chase",
    "P>PA": """
        help meet/met call thank greet teach/taught warn trust invite marry kiss hug/hugged
        feed/fed rescue punish praise scold comfort welcome forgive/forgave obey blame
        pay/paid hire serve
        """,
    "P>L": "visit leave/left enter protect reach explore defend search sweep/swept dig/dug/digging",
    "P>S": """
        tell/told write/wrote understand/understood explain learn repeat believe describe
        whisper invent recite memorize translate discuss announce record hum/hummed study
        """,
    "P>FDTA>PA": "give/gave send/sent show offer lend/lent bring/brought sell/sold throw/threw",
    "P>S>P": "tell/told teach/taught",
}

# Adjective groups: "CLASSES : adjectives"; an adjective can describe nouns of those classes.
ADJECTIVES: dict[str, str] = {
    "PAFDTLS": "old new good bad strange famous beautiful ugly wonderful terrible ordinary",
    "AFTL": """
        big small large tiny huge red blue green yellow black white brown gray golden purple
        pink silver dark bright
        """,
    "PAFDTL": "cold warm dirty",
    "FDTL": "hot wet dry",
    "PAL": "quiet",
    "PA": """
        happy sad angry tired hungry thirsty brave clever kind cruel proud shy lazy calm wild
        gentle strong weak sick young healthy fat thin sleepy
        """,
    "P": """
        rich poor wise honest polite rude foolish patient curious nervous jealous lonely
        friendly generous greedy careful eager loyal humble cheerful grumpy stubborn tall
        short clumsy ambitious modest brilliant lucky
        """,
    "A": "furry fierce tame spotted striped hairy",
    "FD": """
        sweet sour bitter salty fresh delicious tasty spicy ripe juicy rotten raw crisp
        soft frozen sticky crunchy creamy stale
        """,
    "T": """
        heavy broken sharp round expensive cheap precious shiny rusty wooden fragile useful
        useless plastic modern antique colorful fancy
        """,
    "L": """
        busy crowded distant ancient wide narrow deep peaceful noisy dangerous safe holy
        dusty muddy sunny hidden empty remote foggy rocky sandy icy grassy lovely
        """,
    "S": "true funny long simple difficult important boring interesting clear sacred",
}

# Manner adverbs with the adjective they are built from (the target builds them the same way).
ADVERBS = """
    quickly/quick slowly/slow quietly/quiet loudly/loud carefully/careful happily/happy
    sadly/sad gently/gentle proudly/proud angrily/angry bravely/brave kindly/kind
    politely/polite patiently/patient nervously/nervous calmly/calm eagerly/eager badly/bad
    warmly/warm softly/soft secretly/secretive openly/open cheerfully/cheerful
    honestly/honest wisely/wise foolishly/foolish greedily/greedy clumsily/clumsy
    """

NAMES = """
    anna mara leo tom ben sam lucy emma noah liam olivia mia ella nora ruby hugo felix oscar
    otto omar yusuf amir ravi priya arjun hana yuki kenji mei chen wei pablo diego carlos
    maria elena lucia marco luca paolo giulia sara david daniel adam eva ida karl hans lena
    greta ingrid olaf sven nils erik astrid freya ahmed fatima leila zara nadia samir tariq
    kofi ama kwame zola thabo nia ayo jamal malik dina ruth esther miriam jonah levi gideon
    isaac jacob simon peter paul andrew thomas james henry arthur alice clara julia laura
    helen irene vera olga ivan boris igor sasha nina katya tanya dmitri yasmin rosa inez
    pedro jorge lars finn theo jonas elias mateo lina noor aisha hamza idris kemal
    aylin emre deniz selin kaan tomas jakub marta ewa piotr mohan anil sunita deepa kiran
    lakshmi vikram hiro sakura aiko minho jisoo bao linh tuan ngozi chidi emeka amara femi
    tunde kojo efua zuri imani baraka juma nuru
    """

CITIES = """
    london paris rome berlin madrid lisbon vienna prague athens cairo tokyo lima delhi oslo
    dublin moscow warsaw istanbul baghdad tehran lagos nairobi accra dakar tunis seoul
    beijing shanghai bangkok hanoi manila jakarta sydney toronto chicago boston denver
    havana quito bogota venice milan naples geneva zurich munich hamburg amsterdam brussels
    stockholm helsinki copenhagen riga budapest bucharest belgrade kabul karachi mumbai
    kolkata dhaka
    """
