"""The generated demo collection: deterministic English passages with graded relevance.

Context:
    Classrooms have no hub access, so RankScope ships a collection it builds itself. Each query
    asks about one *aspect* (symptoms, habitat, how it works, ...) of one *subject* (influenza,
    the red fox, a wind turbine, ...). Passages are written from sentence templates whose slots
    are filled from per-category word pools, so the text reads as plain English while every
    relevance label is known by construction.

Intuition:
    Relevance needs more than term matching. Answering passages often use a paraphrase of the
    aspect word ("signs" for "symptoms"), while passages about *other* subjects repeat the
    literal aspect word, and passages about the same subject but another aspect repeat the
    subject name. BM25 is therefore a fair but beatable baseline, and the IR features of the
    probing study (coverage, TF, stream length, similarities) spread over their ranges.

Grades (per query = subject s, aspect a):
    3: the long passage about (s, a) — a full answer;
    2: the short passage about (s, a) — a partial answer;
    1: any other passage about s — on topic, does not answer;
    0: everything else (passages on other subjects, general-interest passages).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pandas as pd

DEMO_SEED = 13  # fixed: the collection is part of the project, not a random draw
HELD_OUT_EVERY = 5  # every 5th query (qid order) is held out from adapter training


@dataclass(frozen=True)
class Aspect:
    name: str
    queries: tuple[str, ...]  # templates with {s}
    literal: str  # the aspect word as users type it (BM25 bait in distractors)
    answers: tuple[str, ...]  # answer sentence templates with {s}, {a1}, {a2}, {a3}
    pool: tuple  # values for {a1}..{a3}: one tuple shared by all slots, or three tuples (one a slot)


@dataclass(frozen=True)
class Category:
    name: str
    subjects: tuple[str, ...]
    aspects: tuple[Aspect, ...]
    fillers: tuple[str, ...]  # on-topic sentences that answer nothing, with {s}


CATEGORIES: tuple[Category, ...] = (
    Category(
        "illness",
        ("influenza", "measles", "asthma", "type 2 diabetes", "malaria", "migraine",
         "tuberculosis", "scurvy", "anemia", "bronchitis", "shingles", "gout"),
        (
            Aspect("symptoms",
                   ("what are the symptoms of {s}", "{s} symptoms in adults",
                    "how do i know if i have {s}"),
                   "symptoms",
                   ("The first signs of {s} are usually {a1} and {a2}.",
                    "Patients with {s} often report {a1}, followed a few days later by {a3}.",
                    "A person with {s} may notice {a2} that gets worse at night.",
                    "Doctors recognise {s} by {a1} together with {a3}.",
                    "Typical symptoms of {s} include {a2} and {a3}."),
                   ("a high fever", "a dry cough", "aching joints", "severe fatigue",
                    "shortness of breath", "a red skin rash", "blurred vision",
                    "swollen glands", "night sweats", "sudden weight loss", "pale skin",
                    "a throbbing headache", "bleeding gums", "sharp pain in the big toe")),
            Aspect("causes",
                   ("what causes {s}", "causes of {s}", "why do people get {s}"),
                   "causes",
                   ("{s} is brought on by {a1}.",
                    "Most cases of {s} can be traced back to {a2}.",
                    "The illness is triggered by {a3}, according to physicians.",
                    "Researchers link {s} to {a1} and, less often, to {a2}.",
                    "One common cause of {s} is {a3}."),
                   ("a virus that spreads through droplets in the air",
                    "resistance to insulin",
                    "a parasite carried by mosquitoes", "a lack of vitamin C in the diet",
                    "too little iron in the blood", "inflamed airways in the lungs",
                    "uric acid crystals in a joint",
                    "a bacterium that attacks the lungs", "genes inherited from parents",
                    "long exposure to tobacco smoke")),
            Aspect("treatment",
                   ("how is {s} treated", "treatment for {s}", "best medicine for {s}"),
                   "treatment",
                   ("Doctors usually prescribe {a1} for {s}.",
                    "Recovery from {s} is faster with {a2} and plenty of rest.",
                    "In severe cases of {s}, patients receive {a3} in hospital.",
                    "Most people with {s} get better after a course of {a1}.",
                    "Managing {s} often means {a2} for several weeks."),
                   ("antiviral tablets", "a course of antibiotics", "an inhaled steroid",
                    "daily insulin injections", "iron supplements", "fresh citrus fruit",
                    "painkillers and cold compresses", "intravenous fluids",
                    "careful changes to diet", "anti-inflammatory drugs")),
            Aspect("prevention",
                   ("how to prevent {s}", "can {s} be prevented", "ways to avoid {s}"),
                   "prevention",
                   ("The risk of {s} falls sharply with {a1}.",
                    "Health agencies recommend {a2} to stop {s} from spreading.",
                    "People can protect themselves from {s} through {a3}.",
                    "{s} is far less common where {a1} is routine.",
                    "Avoiding {s} mostly comes down to {a2}."),
                   ("a yearly vaccine", "washing hands often", "sleeping under bed nets",
                    "regular exercise", "a balanced diet", "avoiding cigarette smoke",
                    "drinking enough water", "early screening at a clinic")),
            Aspect("risk groups",
                   ("who is at risk of {s}", "{s} risk factors", "who gets {s} most often"),
                   "risk factors",
                   ("{s} is most dangerous for {a1}.",
                    "Doctors keep a close eye on {a2}, who fall ill with {s} more often.",
                    "Among {a3}, {s} tends to be more severe.",
                    "Surveys show that {a1} and {a3} are hit hardest by {s}."),
                   ("young children", "people over sixty-five", "pregnant women",
                    "smokers", "people with weak immune systems", "night-shift workers",
                    "travellers to tropical regions", "people who drink heavily")),
        ),
        ("{s} has been described in medical texts for centuries.",
         "Hospitals record thousands of visits related to {s} every year.",
         "Public health campaigns about {s} appear on posters and radio.",
         "The history of {s} is closely tied to the growth of modern medicine."),
    ),
    Category(
        "animal",
        ("honeybee", "red fox", "humpback whale", "emperor penguin", "african elephant",
         "octopus", "barn owl", "grey wolf", "sea turtle", "monarch butterfly", "beaver",
         "snow leopard"),
        (
            Aspect("diet",
                   ("what does the {s} eat", "{s} diet", "what food does a {s} eat"),
                   "diet",
                   ("The {s} feeds mainly on {a1}.",
                    "In winter the {s} switches to {a2} when other food is scarce.",
                    "A hungry {s} will also take {a3}.",
                    "Field biologists have watched the {s} hunting for {a1} at dawn.",
                    "Most of the meals of a {s} consist of {a2}."),
                   ("small rodents", "nectar and pollen", "krill and small fish",
                    "squid", "grasses and tree bark", "crabs and shellfish", "beetles",
                    "fruit and berries", "young deer", "milkweed leaves", "seaweed")),
            Aspect("habitat",
                   ("where does the {s} live", "{s} habitat", "natural home of the {s}"),
                   "habitat",
                   ("The {s} makes its home in {a1}.",
                    "Wild populations of the {s} are found across {a2}.",
                    "A {s} prefers {a3}, where it can shelter from predators.",
                    "You are most likely to see a {s} in {a1} or along {a2}."),
                   ("dense temperate forests", "open grassland", "cold polar seas",
                    "rocky mountain slopes", "warm coastal waters", "river banks",
                    "old farm buildings", "the African savanna", "coral reefs",
                    "high Himalayan valleys")),
            Aspect("lifespan",
                   ("how long does a {s} live", "{s} lifespan", "average age of a {s}"),
                   "lifespan",
                   ("In the wild a {s} survives for {a1}.",
                    "A {s} kept in captivity can reach {a2}.",
                    "Few of them live beyond {a3}, because predators and disease take a toll.",
                    "The oldest {s} on record reached {a2}."),
                   ("about six weeks", "three to five years", "around twelve years",
                    "up to twenty years", "more than forty years", "nearly seventy years",
                    "roughly a decade", "fifty years or more")),
            Aspect("reproduction",
                   ("how does the {s} reproduce", "{s} breeding season",
                    "how many young does a {s} have"),
                   "breeding",
                   ("Each spring the {s} raises {a1}.",
                    "The young of the {s} stay with their mother for {a2}.",
                    "The {s} mates {a3} and guards the nest closely.",
                    "A female {s} produces {a1} at a time."),
                   (("a single calf", "a litter of four to six cubs", "one egg",
                     "hundreds of eggs", "two or three chicks"),
                    ("about two years", "several months", "a few weeks"),
                    ("once a year", "every other year", "in late spring"))),
            Aspect("conservation status",
                   ("is the {s} endangered", "{s} population decline",
                    "threats to the {s}"),
                   "endangered species",
                   ("Numbers of the {s} have fallen because of {a1}.",
                    "Conservation groups list {a2} as the main danger to the {s}.",
                    "The {s} is now protected by law, after years of {a3}.",
                    "Biologists warn that {a1} could push the {s} towards extinction."),
                   ("habitat loss", "illegal hunting", "pesticide use",
                    "warming oceans", "plastic pollution", "collisions with ships",
                    "loss of sea ice", "road traffic")),
        ),
        ("The {s} appears in folk tales from many parts of the world.",
         "Photographers travel long distances to capture the {s} on camera.",
         "The {s} was first described by naturalists in the eighteenth century.",
         "Children often learn about the {s} from picture books."),
    ),
    Category(
        "city",
        ("Lisbon", "Kyoto", "Nairobi", "Reykjavik", "Montreal", "Istanbul", "Lima",
         "Krakow", "Hanoi", "Adelaide", "Marrakesh", "Valparaiso"),
        (
            Aspect("history",
                   ("history of {s}", "when was {s} founded", "{s} historical events"),
                   "history",
                   ("{s} was founded {a1} as a small trading post.",
                    "In the past, {s} grew rich from {a2}.",
                    "The old town of {s} was rebuilt after {a3}.",
                    "Historians believe the first settlement at {s} appeared {a1}."),
                   (("more than a thousand years ago", "in the sixteenth century",
                     "by Roman merchants", "in the middle ages"),
                    ("the spice trade", "the silk road", "gold mining", "the wool trade"),
                    ("a great earthquake", "a devastating fire", "a long siege",
                     "years of colonial rule"))),
            Aspect("climate",
                   ("what is the weather like in {s}", "{s} climate",
                    "best time of year to visit {s}"),
                   "climate",
                   ("Summers in {s} are {a1}, while winters are {a2}.",
                    "Visitors to {s} should expect {a3} for much of the year.",
                    "Temperatures in {s} rarely fall below freezing, and July brings {a3}.",
                    "The rainy season in {s} brings {a3}."),
                   (("hot and dry", "mild and wet", "short and cool", "humid"),
                    ("long and dark", "mild and rainy", "cold and windy", "short and dry"),
                    ("humid afternoons", "strong sea breezes", "heavy monsoon showers",
                     "clear sunny skies"))),
            Aspect("economy",
                   ("what is the economy of {s} based on", "{s} main industries",
                    "jobs in {s}"),
                   "economy",
                   ("The local economy of {s} depends on {a1}.",
                    "Many residents of {s} work in {a2}.",
                    "In recent decades {s} has attracted {a3}.",
                    "Much of the money in {s} comes from {a1}."),
                   ("tourism", "fishing", "software companies", "the port and shipping",
                    "banking and finance", "textile factories", "coffee and tea",
                    "film studios", "universities and research")),
            Aspect("landmarks",
                   ("what to see in {s}", "famous landmarks in {s}",
                    "top attractions of {s}"),
                   "landmarks",
                   ("No trip to {s} is complete without a walk to {a1}.",
                    "Crowds gather every evening at {a2} in {s}.",
                    "The skyline of {s} is dominated by {a3}.",
                    "Tourists in {s} queue for hours to enter {a1}."),
                   ("the old cathedral", "a hilltop fortress", "the central market",
                    "a golden temple", "the harbour lighthouse", "a famous stone bridge",
                    "the national museum", "a colourful cable car")),
            Aspect("transport",
                   ("how to get around {s}", "public transport in {s}",
                    "{s} airport to city centre"),
                   "public transport",
                   ("The easiest way to move around {s} is by {a1}.",
                    "{s} has {a2} that runs from early morning until midnight.",
                    "From the airport, {a3} reaches the centre of {s} in about half an hour.",
                    "Locals in {s} mostly travel by {a1}."),
                   ("tram", "bicycle", "an underground metro", "a network of buses",
                    "ferry", "shared taxi", "a fast train", "motorbike")),
        ),
        ("{s} is home to more than a million people.",
         "Writers and painters have long been drawn to {s}.",
         "The name {s} is known to travellers around the world.",
         "{s} hosts several festivals that attract visitors from abroad."),
    ),
    Category(
        "technology",
        ("solar panel", "lithium battery", "jet engine", "refrigerator", "nuclear reactor",
         "wind turbine", "microwave oven", "fibre optic cable", "electric motor",
         "3d printer", "heat pump", "smoke detector"),
        (
            Aspect("how it works",
                   ("how does a {s} work", "{s} working principle",
                    "explain how a {s} works"),
                   "working principle",
                   ("Inside a {s}, {a1}.",
                    "The basic idea of a {s} is that {a2}.",
                    "A {s} operates because {a3}.",
                    "Engineers explain that in a {s} {a1}, which is then put to use."),
                   ("light knocks electrons loose in silicon", "ions move between two electrodes",
                    "air is compressed and burned with fuel",
                    "a fluid carries heat from one place to another",
                    "splitting atoms releases heat", "wind turns large blades",
                    "waves make water molecules vibrate", "light bounces along thin glass",
                    "magnets push against a coil carrying current",
                    "plastic is laid down one thin layer at a time")),
            Aspect("invention",
                   ("who invented the {s}", "history of the {s}",
                    "when was the {s} invented"),
                   "invention",
                   ("The first working {s} was built {a1}.",
                    "Credit for the {s} usually goes to {a2}.",
                    "Early designs of the {s} appeared {a3}.",
                    "It took {a2} many years to turn the {s} into a product."),
                   (("in the nineteenth century", "shortly after the Second World War",
                     "in the nineteen fifties", "in the early nineteen eighties"),
                    ("a small team of engineers", "a university laboratory",
                     "a self-taught inventor", "a telephone company"),
                    ("in the eighteen nineties", "between the two world wars",
                     "in the nineteen sixties"))),
            Aspect("cost",
                   ("how much does a {s} cost", "{s} price", "is a {s} expensive"),
                   "cost",
                   ("A typical {s} sells for {a1}.",
                    "Prices for a {s} range from {a2} up to {a3}.",
                    "Installing a {s} adds {a1} to the bill.",
                    "Buyers can expect to pay around {a2} for a {s}."),
                   ("a few hundred dollars", "about a thousand euros", "several million dollars",
                    "less than fifty dollars", "twenty thousand pounds",
                    "a few dollars per metre", "billions of dollars")),
            Aspect("safety",
                   ("is a {s} safe", "{s} dangers", "risks of using a {s}"),
                   "dangers",
                   ("The main hazard of a {s} is {a1}.",
                    "Safety experts warn that a damaged {s} can cause {a2}.",
                    "Handled carelessly, a {s} may lead to {a3}.",
                    "Regulators require every {s} to be tested for {a1}."),
                   ("fire", "electric shock", "radiation leaks", "toxic fumes", "burns",
                    "overheating", "loud noise", "falling parts")),
            Aspect("maintenance",
                   ("how to maintain a {s}", "{s} cleaning and repair",
                    "how long does a {s} last"),
                   "maintenance",
                   ("A {s} keeps working for {a1} if it is looked after.",
                    "Owners should {a2} at least once a year.",
                    "Technicians recommend that you {a3} to extend the life of a {s}.",
                    "Most faults in a {s} come from failing to {a2}."),
                   (("twenty years or more", "about ten years", "only a few years"),
                    ("clean the dust from it", "check the seals", "replace the filters"),
                    ("update the software", "tighten loose connections",
                     "book a yearly inspection"))),
        ),
        ("The {s} is now found in homes and factories around the world.",
         "Sales of the {s} have grown steadily for decades.",
         "Magazines regularly review new models of the {s}.",
         "The {s} has changed the way many people live and work."),
    ),
    Category(
        "food",
        ("sourdough bread", "green tea", "dark chocolate", "olive oil", "yogurt",
         "brown rice", "coffee", "honey", "kimchi", "quinoa", "cheddar cheese", "lentils"),
        (
            Aspect("health benefits",
                   ("is {s} healthy", "health benefits of {s}", "{s} nutrition"),
                   "health benefits",
                   ("Eating {s} supplies {a1}.",
                    "Nutritionists praise {s} for {a2}.",
                    "Regular portions of {s} may help with {a3}.",
                    "A serving of {s} is a good source of {a1}."),
                   (("plenty of fibre", "protein", "antioxidants", "healthy fats"),
                    ("its vitamins and minerals", "its live bacteria", "its slow-release energy"),
                    ("high cholesterol", "digestion", "heart health",
                     "keeping energy steady through the day"))),
            Aspect("production",
                   ("how is {s} made", "{s} production process", "making {s} at home"),
                   "production",
                   ("To produce {s}, {a1}.",
                    "Making {s} starts when {a2}.",
                    "The traditional method for {s} requires that {a3}.",
                    "Factories that turn out {s} still follow the rule that {a1}."),
                   ("the raw ingredients are left to ferment for days",
                    "the crop is harvested by hand",
                    "the mixture is heated slowly and stirred",
                    "leaves are dried in the sun", "the beans are roasted",
                    "milk is warmed and cultured", "the grains are rinsed and soaked",
                    "the paste is pressed between stones")),
            Aspect("storage",
                   ("how to store {s}", "how long does {s} keep", "does {s} go bad"),
                   "storage",
                   ("{s} keeps best in {a1}.",
                    "Once opened, {s} lasts for {a2}.",
                    "Keep {s} away from {a3} to stop it from spoiling.",
                    "Kept in {a1}, {s} stays fresh for {a2}."),
                   (("a cool dark cupboard", "the fridge", "an airtight jar"),
                    ("about a week", "several months", "only two or three days"),
                    ("direct sunlight", "moisture and heat", "strong smells"))),
            Aspect("origin",
                   ("where does {s} come from", "origin of {s}", "{s} history"),
                   "origin",
                   ("{s} was first enjoyed in {a1}.",
                    "The roots of {s} go back to {a2}.",
                    "Traders carried {s} from {a3} to the rest of the world.",
                    "Archaeologists have found traces of {s} in {a1}."),
                   ("ancient Egypt", "the Andes mountains", "southern China",
                    "the Korean peninsula", "Mediterranean villages", "Ethiopian highlands",
                    "Central America", "medieval monasteries")),
            Aspect("cooking",
                   ("how to cook with {s}", "{s} recipes", "ways to eat {s}"),
                   "recipes",
                   ("A simple way to serve {s} is {a1}.",
                    "Chefs like to combine {s} with {a2}.",
                    "For breakfast, try {s} {a3}.",
                    "Many home cooks use {s} {a1}."),
                   ("with roasted vegetables", "in a warm salad", "mixed into soup",
                    "on toast", "with fresh fruit", "in a spicy stew",
                    "as a sauce for pasta", "with a pinch of salt")),
        ),
        ("{s} is sold in supermarkets and markets almost everywhere.",
         "Food writers have filled many pages about {s}.",
         "The popularity of {s} keeps growing among young shoppers.",
         "{s} features in many family traditions."),
    ),
    Category(
        "sport",
        ("tennis", "rugby", "rock climbing", "table tennis", "cross-country skiing",
         "volleyball", "fencing", "surfing", "cricket", "marathon running", "judo",
         "rowing"),
        (
            Aspect("rules",
                   ("rules of {s}", "how do you play {s}", "{s} scoring system"),
                   "rules",
                   ("In {s}, {a1}.",
                    "A match of {s} is won when {a2}.",
                    "Officials in {s} make sure that {a3}.",
                    "Beginners to {s} first learn that {a1}."),
                   ("each side tries to score more points than the other",
                    "a player reaches a set number of points",
                    "nobody steps over the line", "the ball must bounce only once",
                    "touching the opponent first earns a point",
                    "the fastest time over the course wins")),
            Aspect("equipment",
                   ("what equipment do you need for {s}", "{s} gear",
                    "{s} equipment for beginners"),
                   "equipment",
                   ("To take up {s} you need {a1}.",
                    "Serious {s} players invest in {a2}.",
                    "Clubs often lend {a3} to newcomers in {s}.",
                    "The most important piece of kit in {s} is {a1}."),
                   ("a light racket", "a good pair of shoes", "a helmet",
                    "a harness and rope", "a padded jacket", "a long board",
                    "waxed skis", "a carbon oar")),
            Aspect("history",
                   ("history of {s}", "who invented {s}", "origin of {s}"),
                   "history",
                   ("{s} was first played {a1}.",
                    "The modern form of {s} took shape {a2}.",
                    "Early versions of {s} were popular among {a3}.",
                    "Historians trace {s} back to {a1}."),
                   (("in English schools", "on Pacific islands", "in mountain villages",
                     "at ancient Greek festivals"),
                    ("in the nineteenth century", "in the early twentieth century",
                     "after the First World War"),
                    ("soldiers", "fishermen", "farmers", "university students"))),
            Aspect("training",
                   ("how to train for {s}", "{s} training plan", "exercises for {s}"),
                   "training",
                   ("Coaches in {s} build fitness with {a1}.",
                    "A good week of preparation for {s} includes {a2}.",
                    "Athletes in {s} improve by {a3}.",
                    "To get better at {s}, spend time on {a1}."),
                   ("long slow runs", "interval sprints", "core strength work",
                    "practising technique with a partner", "stretching every day",
                    "weight lifting twice a week", "watching video of past matches")),
            Aspect("injuries",
                   ("common {s} injuries", "is {s} dangerous", "{s} injury prevention"),
                   "injuries",
                   ("The most frequent complaint in {s} is {a1}.",
                    "Doctors treat many {s} players for {a2}.",
                    "A poor warm-up in {s} can lead to {a3}.",
                    "Players of {s} often suffer {a1} late in the season."),
                   ("a sprained ankle", "sore shoulders", "knee ligament damage",
                    "tennis elbow", "blisters", "back strain", "a broken finger")),
        ),
        ("{s} is followed by millions of fans on television.",
         "Local clubs for {s} welcome members of all ages.",
         "{s} has produced some of the best-known athletes of the age.",
         "Big {s} events fill stadiums and sports halls."),
    ),
)

# Paraphrases the trained rankers can learn and BM25 cannot: answer passages name their
# aspect with one of these more often than with the literal query word.
ASPECT_LEADS: dict[str, tuple[str, ...]] = {
    "symptoms": ("warning signs", "signs", "what patients feel"),
    "causes": ("origins of the illness", "triggers", "what brings it on"),
    "treatment": ("therapy", "care", "medication"),
    "prevention": ("protection", "staying safe", "lowering the risk"),
    "risk groups": ("who is vulnerable", "people most affected", "groups in danger"),
    "diet": ("feeding habits", "food", "meals"),
    "habitat": ("range", "where it is found", "home territory"),
    "lifespan": ("life expectancy", "age", "years of life"),
    "reproduction": ("raising young", "mating", "offspring"),
    "conservation status": ("threats", "protection status", "declining numbers"),
    "history": ("past", "early days", "beginnings"),
    "climate": ("weather", "seasons", "temperatures"),
    "economy": ("industry", "trade", "business"),
    "landmarks": ("sights", "attractions", "famous places"),
    "transport": ("getting around", "travel options", "trains and buses"),
    "how it works": ("working principle", "inner workings", "the physics behind it"),
    "invention": ("inventors", "early development", "first designs"),
    "cost": ("price", "what buyers pay", "expense"),
    "safety": ("hazards", "risks", "safe use"),
    "maintenance": ("upkeep", "servicing", "care and repair"),
    "health benefits": ("nutrition", "goodness", "effect on health"),
    "production": ("manufacture", "preparation", "how producers work"),
    "storage": ("keeping it fresh", "shelf life", "storing"),
    "origin": ("roots", "birthplace", "early history"),
    "cooking": ("kitchen uses", "dishes", "serving ideas"),
    "rules": ("how a match works", "the laws of the game", "scoring"),
    "equipment": ("kit", "gear", "what to bring"),
    "training": ("preparation", "practice", "fitness work"),
    "injuries": ("physical risks", "common complaints", "strains and sprains"),
}

GENERAL_TOPICS = (
    "This overview collects {lit} for many subjects in one place.",
    "Readers often ask about {lit}, so the editors added a short glossary.",
    "The word {lit} appears in thousands of search queries every day.",
    "Librarians sort questions about {lit} into a separate shelf.",
    "A good encyclopedia lists {lit} next to every entry.",
)


def _capitalise(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


def _answer_sentences(rng: random.Random, aspect: Aspect, subject: str, count: int) -> list[str]:
    templates = rng.sample(aspect.answers, k=min(count, len(aspect.answers)))
    out = []
    for template in templates:
        if isinstance(aspect.pool[0], tuple):
            a1, a2, a3 = (rng.choice(slot) for slot in aspect.pool)
        else:
            a1, a2, a3 = rng.sample(aspect.pool, k=3)
        out.append(_capitalise(template.format(s=subject, a1=a1, a2=a2, a3=a3)))
    return out


def _lead(rng: random.Random, aspect: Aspect, subject: str) -> str:
    # Half the answering passages open with the literal aspect word, half with a paraphrase.
    words = aspect.literal if rng.random() < 0.35 else rng.choice(ASPECT_LEADS[aspect.name])
    return f"{_capitalise(subject)} — {words}."


def build_demo_collection(seed: int = DEMO_SEED) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Build (docs, queries, qrels) frames of the demo collection.

    Returns:
        docs ``[docno, title, text]``, queries ``[qid, text, split]`` (split: train / test),
        qrels ``[qid, docno, relevance]`` with grades 0–3 for every (query, judged doc).
    """
    rng = random.Random(seed)
    docs: list[dict] = []
    queries: list[dict] = []
    qrels: list[dict] = []
    subject_docs: dict[str, list[str]] = {}
    for category in CATEGORIES:
        for subject in category.subjects:
            subject_docs[subject] = []
            for aspect in category.aspects:
                for kind in ("full", "brief"):
                    n_answers = rng.randint(3, 4) if kind == "full" else 1
                    n_fillers = rng.randint(0, 2) if kind == "full" else rng.randint(1, 3)
                    body = _answer_sentences(rng, aspect, subject, n_answers)
                    fillers = [_capitalise(f.format(s=subject))
                               for f in rng.sample(category.fillers, k=n_fillers)]
                    sentences = body + fillers
                    rng.shuffle(sentences)
                    if kind == "full" and rng.random() < 0.6:
                        sentences.insert(0, _lead(rng, aspect, subject))
                    docno = f"D{len(docs) + 1:04d}"
                    title = f"{_capitalise(subject)}: {rng.choice(ASPECT_LEADS[aspect.name])}"
                    docs.append({"docno": docno, "title": title, "text": " ".join(sentences),
                                 "_subject": subject, "_aspect": aspect.name, "_kind": kind})
                    subject_docs[subject].append(docno)
            # A general passage per subject: on topic, answers no aspect.
            docno = f"D{len(docs) + 1:04d}"
            sentences = [_capitalise(f.format(s=subject)) for f in category.fillers]
            rng.shuffle(sentences)
            docs.append({"docno": docno, "title": _capitalise(subject),
                         "text": " ".join(sentences[: rng.randint(2, 4)]),
                         "_subject": subject, "_aspect": "", "_kind": "general"})
            subject_docs[subject].append(docno)
    # Distractors: other-subject passages that repeat the literal aspect word (BM25 bait).
    for category in CATEGORIES:
        for aspect in category.aspects:
            for _ in range(3):
                other = rng.choice(category.subjects)
                filler = [_capitalise(f.format(s=other)) for f in rng.sample(category.fillers, k=2)]
                general = rng.choice(GENERAL_TOPICS)
                closing = rng.choice([g for g in GENERAL_TOPICS if g != general])
                text = " ".join([general.format(lit=aspect.literal), *filler,
                                 closing.format(lit=aspect.literal)])
                docno = f"D{len(docs) + 1:04d}"
                docs.append({"docno": docno, "title": f"About {aspect.literal}", "text": text,
                             "_subject": other, "_aspect": "", "_kind": "distractor"})
                subject_docs[other].append(docno)
    by_docno = {d["docno"]: d for d in docs}
    for category in CATEGORIES:
        for subject in category.subjects:
            for aspect in category.aspects:
                template = rng.choice(aspect.queries)
                qid = f"Q{len(queries) + 1:03d}"
                split = "test" if len(queries) % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 else "train"
                queries.append({"qid": qid, "text": template.format(s=subject), "split": split,
                                "_subject": subject, "_aspect": aspect.name})
                for docno in subject_docs[subject]:
                    doc = by_docno[docno]
                    if doc["_kind"] == "distractor":
                        continue  # judged below with the other non-relevant candidates
                    grade = 1
                    if doc["_aspect"] == aspect.name:
                        grade = 3 if doc["_kind"] == "full" else 2
                    qrels.append({"qid": qid, "docno": docno, "relevance": grade})
                # Same-aspect passages of two other subjects: judged non-relevant.
                others = [s for s in category.subjects if s != subject]
                for other in rng.sample(others, k=2):
                    for docno in subject_docs[other]:
                        doc = by_docno[docno]
                        if doc["_aspect"] == aspect.name and doc["_kind"] == "full":
                            qrels.append({"qid": qid, "docno": docno, "relevance": 0})
    docs_frame = pd.DataFrame(docs)[["docno", "title", "text"]]
    queries_frame = pd.DataFrame(queries)[["qid", "text", "split"]]
    qrels_frame = pd.DataFrame(qrels).drop_duplicates(["qid", "docno"])
    return docs_frame, queries_frame, qrels_frame.reset_index(drop=True)
