"""Sample users with their optional profile and their addresses (one default per kind)."""

from __future__ import annotations

from collections.abc import Iterator

from dbcli.shop.seed.rows import CHUNK, DAY, NULL, Chunk, SampleData, pick, timestamp, weights

FIRST = ["Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Edsger",
         "Radia", "John", "Hedy", "Tim", "Katherine", "Guido", "Shafi", "Donald", "Lynn", "Niklaus",
         "Sophie", "Yukihiro", "Anita", "Bjarne", "Carol", "James", "Jean", "Leslie", "Mary", "Robin",
         "Susan", "Tony", "Ursula", "Vint", "Wendy", "Xavier", "Yvonne", "Zed", "Olga", "Pedro"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen",
        "Dijkstra", "Perlman", "McCarthy", "Lamarr", "Berners-Lee", "Johnson", "van Rossum", "Goldwasser",
        "Knuth", "Conway", "Wirth", "Wilson", "Matsumoto", "Borg", "Stroustrup", "Shaw", "Gosling",
        "Sammet", "Lamport", "Keller", "Milner", "Kare", "Hoare", "Franklin", "Cerf", "Hall", "Leroy",
        "Nakamura", "Okafor", "Novak", "Silva"]
TIERS = (("standard", 70), ("silver", 18), ("gold", 9), ("platinum", 3))
CITIES = [("Berlin", "DE", "1####"), ("Munich", "DE", "8####"), ("Paris", "FR", "75###"),
          ("Lyon", "FR", "69###"), ("London", "GB", "EC# #AA"), ("Leeds", "GB", "LS# #AA"),
          ("New York", "US", "10###"), ("Austin", "US", "787##"), ("Toronto", "CA", "M#A #A#"),
          ("Madrid", "ES", "28###"), ("Rome", "IT", "00###"), ("Amsterdam", "NL", "10## AA"),
          ("Hong Kong", "HK", None), ("Dublin", "IE", None), ("Tokyo", "JP", "1##-####")]
STREETS = ["Main Street", "High Street", "Station Road", "Park Avenue", "Church Lane", "Mill Road",
           "Elm Street", "Harbour Way", "King Street", "Queen Avenue", "Market Square", "River Road"]
BIOS = ["Loves a good bargain.", "Buys gifts for the whole family.", "Early adopter of gadgets.",
        "Reads two books a week.", "Weekend cyclist and camper.", "Collects board games."]

USER_COLUMNS = ("user_id", "email", "name", "tier", "created_at")
PROFILE_COLUMNS = ("user_id", "phone", "date_of_birth", "bio", "marketing_opt_in", "updated_at")
ADDRESS_COLUMNS = ("address_id", "user_id", "kind", "line1", "line2", "city", "postal_code", "country",
                   "is_default", "created_at")


def user_chunks(data: SampleData) -> Iterator[Chunk]:
    """users, user_profiles and addresses, CHUNK users at a time."""
    rng, base = data.rng, data.base
    tiers, tier_cw = weights(TIERS)
    address_id = 0
    for start in range(1, data.n_users + 1, CHUNK):
        users, profiles, addresses = [], [], []
        for uid in range(start, min(start + CHUNK, data.n_users + 1)):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            name = f"{first} {last}"
            email = f"{first.lower()}.{last.lower().replace(' ', '')}{uid}@example.com"
            tier = pick(rng, tiers, tier_cw)
            created = base - rng.randint(30 * DAY, 3 * 365 * DAY)
            data.user_created.append(created)
            data.user_name.append(name)
            data.user_tier.append(tier)
            users.append(f"{uid}\t{email}\t{name}\t{tier}\t{timestamp(created)}\n")
            if rng.random() < 0.8:  # the 1:1 profile is optional
                dob = f"{rng.randint(1950, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                bio = rng.choice(BIOS) if rng.random() < 0.5 else NULL
                opt_in = "t" if rng.random() < 0.35 else "f"
                updated = created + rng.randint(0, 20 * DAY)
                profiles.append(f"{uid}\t+1 555 {rng.randint(0, 9999999):07d}\t{dob}\t{bio}\t{opt_in}"
                                f"\t{timestamp(updated)}\n")
            city, country, postal = rng.choice(CITIES)
            kinds = ["shipping"] + (["billing"] if rng.random() < 0.5 else []) \
                + (["shipping"] if rng.random() < 0.2 else [])
            for i, kind in enumerate(kinds):
                address_id += 1
                if i == 0:
                    data.user_ship.append(address_id)
                default = kind not in kinds[:i]  # at most one default per kind
                if not default:  # a second shipping address elsewhere
                    city, country, postal = rng.choice(CITIES)
                line2 = f"Apt {rng.randint(1, 99)}" if rng.random() < 0.3 else NULL
                addresses.append(
                    f"{address_id}\t{uid}\t{kind}\t{rng.randint(1, 250)} {rng.choice(STREETS)}\t{line2}"
                    f"\t{city}\t{_postal(data, postal)}\t{country}\t{'t' if default else 'f'}"
                    f"\t{timestamp(created)}\n")
        yield data.emit("users", USER_COLUMNS, users)
        yield data.emit("user_profiles", PROFILE_COLUMNS, profiles)
        yield data.emit("addresses", ADDRESS_COLUMNS, addresses, ("users", len(data.user_created), data.n_users))


def _postal(data: SampleData, pattern: str | None) -> str:
    """A postal code of the city's shape: '#' a digit, 'A' a capital letter."""
    if pattern is None:
        return NULL
    rng = data.rng
    return "".join(str(rng.randint(0, 9)) if c == "#" else chr(65 + rng.randint(0, 25)) if c == "A" else c
                   for c in pattern)
