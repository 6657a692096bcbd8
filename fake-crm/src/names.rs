//! Invented personal data: names, organisations, addresses and phone numbers.
//!
//! Every string a fake serves as personal data is built here from invented word lists, so that
//! a privacy sweep can search a database dump or a log for it with no false positives: the
//! surnames and company stems are made-up compounds (`Quillfeather`, `Glimmerthwaite`), first
//! names are unusual, phone numbers sit in ranges reserved for fiction, e-mails use `.example`.
//!
//! CRM users (the sales team) and CRM contacts (the customers they sell to) come from disjoint
//! lists, so a sweep for contact data never matches a user's name, and vice versa.

/// First names of contacts (persons at customer organisations).
const CONTACT_FIRST: &[&str] = &[
    "Aurelisse",
    "Balthazine",
    "Corvanna",
    "Delphinor",
    "Eulalisse",
    "Fenwicka",
    "Gwendolyre",
    "Hyacintha",
    "Isembarda",
    "Jolanthe",
    "Kasimirra",
    "Leontyna",
    "Mirabeaux",
    "Nerissandra",
    "Octavienne",
    "Perpetuina",
    "Quillonna",
    "Rosmerta",
    "Saffronia",
    "Tamsinelle",
    "Ulrikka",
    "Valentrix",
    "Wilhelmetta",
    "Xanthippa",
    "Yevgenia",
    "Zenobiah",
    "Alaricus",
    "Bartolomeus",
    "Casimiro",
    "Dagobertus",
    "Evander",
    "Florizel",
    "Gideonne",
    "Hieronymo",
    "Ignatio",
    "Jasperin",
    "Konstantyn",
    "Leopoldus",
    "Maximinian",
    "Nikodemus",
    "Oswaldine",
    "Peregrinus",
    "Quirinus",
    "Rainulf",
    "Sebastiaan",
    "Theobaldo",
    "Ulfricus",
    "Vespasio",
    "Wystanley",
    "Xerxander",
    "Yorrick",
    "Zacharius",
];

/// First halves of contact surnames.
const SURNAME_HEADS: &[&str] = &[
    "Quill", "Bracken", "Thunder", "Marrow", "Wren", "Silver", "Cobble", "Gravel", "Brindle", "Plough", "Hollow",
    "Kettle", "Lark", "Thistle", "Nettle", "Bramble", "Copper", "Amber", "Heron", "Falcon", "Sparrow", "Juniper",
    "Willow", "Moss",
];

/// Second halves of contact surnames.
const SURNAME_TAILS: &[&str] = &[
    "feather", "quist", "holt", "wick", "stead", "vale", "thorne", "mere", "croft", "worth", "ridge", "dottir",
    "hagen", "dahl", "beck", "scombe",
];

/// First names of CRM users (the tenant's sales team).
const USER_FIRST: &[&str] = &[
    "Pernilla", "Dorian", "Annelise", "Torvald", "Margaux", "Cosimo", "Ingeborg", "Lucian", "Henrike", "Bastian",
    "Ottilie", "Severin", "Rosalind", "Florian", "Gretchen", "Valentin",
];

/// Surnames of CRM users.
const USER_LAST: &[&str] = &[
    "Achterwald",
    "Okonkwo-Lindqvist",
    "Haldorsen-Pike",
    "Brekkestad",
    "Marchetti-Oduya",
    "Kowalczyk-Reyes",
    "Vanderlinde",
    "Sturlusson-Ade",
    "Ferreira-Nakamura",
    "Dunmore-Achebe",
    "Quennell-Voss",
    "Rautavaara-Bell",
    "Oyelaran-Strom",
    "Pettersen-Mbatha",
    "Ludovici-Hart",
    "Zwanenburg",
    "Abernethy-Koh",
    "Castellanos-Vik",
    "Fitzwarren-Lowe",
    "Ijsselmuiden",
    "Montgomery-Baptiste",
    "Nakagawa-Frost",
    "Orsolini-Blom",
    "Wetherell-Iqbal",
];

/// First halves of organisation names.
const ORG_HEADS: &[&str] = &[
    "Quibble", "Murmur", "Glimmer", "Tallow", "Brimble", "Skerry", "Pellucid", "Vellum", "Cinder", "Drizzle", "Fathom",
    "Gossamer", "Hearth", "Inkwell", "Kestrel", "Lantern", "Meadow", "Thimble", "Pumice", "Obsidine",
];

/// Second halves of organisation names.
const ORG_TAILS: &[&str] =
    &["wick", "fen", "gate", "haven", "moor", "ford", "ley", "stow", "thwaite", "combe", "strand", "holm"];

/// What organisations do.
const SECTORS: &[&str] = &[
    "Logistics",
    "Analytics",
    "Pharma",
    "Biotech",
    "Freight",
    "Dental Group",
    "Aerospace",
    "Mining",
    "Robotics",
    "Textiles",
    "Shipping",
    "Foods",
];

/// Names of the selling company (the tenant), one picked per seed.
const COMPANY_STEMS: &[&str] = &["Halvorsund", "Brindlemoor", "Ashcombe", "Kittiwake", "Larchmont", "Dovecote"];

const STREET_HEADS: &[&str] =
    &["Pelican", "Gannet", "Osprey", "Plover", "Curlew", "Bittern", "Dunlin", "Avocet", "Godwit", "Shearwater"];
const STREET_TAILS: &[&str] = &["brook", "field", "stone", "well", "marsh", "hythe"];
const STREET_KINDS: &[&str] = &["Lane", "Row", "Mews", "Wharf", "Walk", "Yard"];

/// A person's name in its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Name {
    pub(crate) first: String,
    pub(crate) last: String,
}

impl Name {
    /// `First Last`.
    pub(crate) fn full(&self) -> String {
        format!("{} {}", self.first, self.last)
    }

    /// `first.last`, lowercase, for the local part of an e-mail address.
    pub(crate) fn email_local(&self) -> String {
        format!("{}.{}", self.first, self.last).to_lowercase()
    }
}

/// The country an organisation (and so its people's phone numbers) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Country {
    Germany,
    UnitedKingdom,
    Sweden,
    UnitedStates,
    Netherlands,
    Finland,
    Denmark,
}

/// Legal forms, each tied to a country; the order picks an organisation's country.
const LEGAL_FORMS: &[(&str, Country)] = &[
    ("GmbH", Country::Germany),
    ("Ltd", Country::UnitedKingdom),
    ("AB", Country::Sweden),
    ("Inc.", Country::UnitedStates),
    ("plc", Country::UnitedKingdom),
    ("B.V.", Country::Netherlands),
    ("Oy", Country::Finland),
    ("A/S", Country::Denmark),
];

const US_AREA_CODES: &[u32] =
    &[202, 212, 305, 312, 415, 503, 617, 646, 702, 713, 206, 303, 404, 512, 612, 720, 801, 919, 215, 214];

impl Country {
    /// Every country, for per-country counters.
    pub(crate) const ALL: [Country; 7] = [
        Country::Germany,
        Country::UnitedKingdom,
        Country::Sweden,
        Country::UnitedStates,
        Country::Netherlands,
        Country::Finland,
        Country::Denmark,
    ];

    /// Index into [`Country::ALL`].
    pub(crate) fn index(self) -> usize {
        Country::ALL.iter().position(|&c| c == self).unwrap_or(0)
    }

    /// English name, as Pipedrive's address `country` field gives it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Country::Germany => "Germany",
            Country::UnitedKingdom => "United Kingdom",
            Country::Sweden => "Sweden",
            Country::UnitedStates => "United States",
            Country::Netherlands => "Netherlands",
            Country::Finland => "Finland",
            Country::Denmark => "Denmark",
        }
    }

    /// (city, region) where its organisations sit.
    pub(crate) fn city(self) -> (&'static str, &'static str) {
        match self {
            Country::Germany => ("Berlin", "Berlin"),
            Country::UnitedKingdom => ("London", "England"),
            Country::Sweden => ("Stockholm", "Stockholms län"),
            Country::UnitedStates => ("Boston", "Massachusetts"),
            Country::Netherlands => ("Amsterdam", "Noord-Holland"),
            Country::Finland => ("Helsinki", "Uusimaa"),
            Country::Denmark => ("Copenhagen", "Capital Region of Denmark"),
        }
    }

    /// A postal code in the country's format, chosen by `n`.
    pub(crate) fn postal_code(self, n: u64) -> String {
        match self {
            Country::Germany => format!("{:05}", 10_115 + n % 3000),
            Country::UnitedKingdom => {
                const DISTRICTS: &[&str] = &["EC1A", "SW1A", "N1", "E14", "W1D", "SE1"];
                let units = ["1BB", "2AA", "9GU", "5AB", "3QF", "7PB"];
                format!("{} {}", DISTRICTS[(n % 6) as usize], units[(n / 6 % 6) as usize])
            }
            Country::Sweden => format!("1{:02} {:02}", 11 + n % 80, n / 80 % 100),
            Country::UnitedStates => format!("02{:03}", 108 + n % 800),
            Country::Netherlands => {
                let letters = b"ABCDEGHJKLMNPRSTVWXZ";
                format!(
                    "10{:02} {}{}",
                    11 + n % 88,
                    letters[(n / 88 % 20) as usize] as char,
                    letters[(n / 1760 % 20) as usize] as char
                )
            }
            Country::Finland => format!("00{:03}", 100 + n % 900),
            Country::Denmark => format!("{}", 1050 + n % 1400),
        }
    }

    /// The `k`-th phone number of this country, in a range reserved for fiction where the
    /// country has one. Distinct `k` give distinct numbers.
    pub(crate) fn phone(self, k: usize) -> String {
        let (number, capacity) = match self {
            Country::Germany => (format!("+49 30 5550 {:04}", k % 10_000), 10_000),
            Country::UnitedKingdom => {
                let n = k % 3000;
                let number = match n / 1000 {
                    0 => format!("+44 7700 900{:03}", n % 1000),
                    1 => format!("+44 20 7946 0{:03}", n % 1000),
                    _ => format!("+44 161 496 0{:03}", n % 1000),
                };
                (number, 3000)
            }
            Country::Sweden => (format!("+46 8 555 {:03} {:02}", k / 100 % 1000, k % 100), 100_000),
            Country::UnitedStates => {
                let n = k % 2000;
                let area = US_AREA_CODES[n % US_AREA_CODES.len()];
                (format!("+1 {area}-555-01{:02}", n / US_AREA_CODES.len()), 2000)
            }
            Country::Netherlands => (format!("+31 20 555 {:04}", k % 10_000), 10_000),
            Country::Finland => (format!("+358 9 555 {:04}", k % 10_000), 10_000),
            Country::Denmark => (format!("+45 55 55 {:02} {:02}", k / 100 % 100, k % 100), 10_000),
        };
        if k < capacity { number } else { format!("{number} ext. {}", k / capacity) }
    }
}

/// An organisation's name in its parts.
#[derive(Clone, Debug)]
pub(crate) struct OrgName {
    /// The invented proper-noun part, e.g. `Quibblewick`.
    pub(crate) stem: String,
    pub(crate) sector: &'static str,
    pub(crate) legal: &'static str,
    pub(crate) country: Country,
}

impl OrgName {
    /// e.g. `Quibblewick Logistics GmbH`.
    pub(crate) fn full(&self) -> String {
        format!("{} {} {}", self.stem, self.sector, self.legal)
    }

    /// e.g. `quibblewick-logistics.example`.
    pub(crate) fn domain(&self) -> String {
        format!("{}-{}.example", self.stem, self.sector).to_lowercase().replace(' ', "-")
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Maps `n` to a slot in `0..total`, a bijection for `n < total`, scattered by a stride coprime
/// to `total` and rotated by `offset`; the second value counts how often `n` wrapped around.
fn spread(n: usize, offset: usize, total: usize) -> (usize, usize) {
    let mut stride = total / 2 + 1;
    while gcd(stride, total) != 1 {
        stride += 1;
    }
    ((n % total * stride + offset) % total, n / total)
}

fn surname(i: usize) -> String {
    let i = i % (SURNAME_HEADS.len() * SURNAME_TAILS.len());
    format!("{}{}", SURNAME_HEADS[i % SURNAME_HEADS.len()], SURNAME_TAILS[i / SURNAME_HEADS.len()])
}

/// The `n`-th contact name; distinct `n` give distinct names for a given `offset`.
pub(crate) fn contact_name(n: usize, offset: usize) -> Name {
    let surnames = SURNAME_HEADS.len() * SURNAME_TAILS.len();
    let (slot, wraps) = spread(n, offset, CONTACT_FIRST.len() * surnames);
    let first = CONTACT_FIRST[slot % CONTACT_FIRST.len()].to_owned();
    let mut last = surname(slot / CONTACT_FIRST.len());
    if wraps > 0 {
        // Past every plain combination: double-barrelled surnames keep names unique.
        last = format!("{last}-{}", surname(wraps - 1 + slot));
    }
    Name { first, last }
}

/// The `n`-th CRM user name; distinct `n` give distinct names for a given `offset`.
pub(crate) fn user_name(n: usize, offset: usize) -> Name {
    let (slot, wraps) = spread(n, offset, USER_FIRST.len() * USER_LAST.len());
    let first = USER_FIRST[slot % USER_FIRST.len()].to_owned();
    let mut last = USER_LAST[slot / USER_FIRST.len()].to_owned();
    if wraps > 0 {
        last = format!("{last} {}", roman(wraps + 1));
    }
    Name { first, last }
}

fn roman(mut n: usize) -> String {
    let mut out = String::new();
    for (value, numeral) in [(10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")] {
        while n >= value {
            out.push_str(numeral);
            n -= value;
        }
    }
    out
}

/// How many distinct organisation names [`org_name`] can give.
pub(crate) fn org_name_capacity() -> usize {
    ORG_HEADS.len() * ORG_TAILS.len() * SECTORS.len()
}

/// The `n`-th organisation name; distinct `n < org_name_capacity()` give distinct names.
pub(crate) fn org_name(n: usize, offset: usize) -> OrgName {
    let (slot, _) = spread(n, offset, org_name_capacity());
    let stems = ORG_HEADS.len() * ORG_TAILS.len();
    let stem_index = slot % stems;
    let stem = format!("{}{}", ORG_HEADS[stem_index % ORG_HEADS.len()], ORG_TAILS[stem_index / ORG_HEADS.len()]);
    let sector = SECTORS[slot / stems];
    let (legal, country) = LEGAL_FORMS[(n + offset) % LEGAL_FORMS.len()];
    OrgName { stem, sector, legal, country }
}

/// The selling company's name stem for a seed.
pub(crate) fn company_stem(pick: usize) -> &'static str {
    COMPANY_STEMS[pick % COMPANY_STEMS.len()]
}

/// A street name, e.g. `Gannetbrook Mews`.
pub(crate) fn street(n: usize) -> String {
    format!(
        "{}{} {}",
        STREET_HEADS[n % STREET_HEADS.len()],
        STREET_TAILS[n / STREET_HEADS.len() % STREET_TAILS.len()],
        STREET_KINDS[n / (STREET_HEADS.len() * STREET_TAILS.len()) % STREET_KINDS.len()]
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_are_unique_and_distinctive() {
        let contacts: HashSet<String> = (0..30_000).map(|n| contact_name(n, 17).full()).collect();
        assert_eq!(contacts.len(), 30_000);
        let users: HashSet<String> = (0..1000).map(|n| user_name(n, 5).full()).collect();
        assert_eq!(users.len(), 1000);
        let orgs: HashSet<String> = (0..org_name_capacity()).map(|n| org_name(n, 3).full()).collect();
        assert_eq!(orgs.len(), org_name_capacity());
        for word in CONTACT_FIRST.iter().chain(USER_FIRST) {
            assert!(word.len() >= 6, "{word} is too short to sweep for");
        }
        // No contact name part occurs inside a user's name, and no user name part inside a
        // contact's, so the two sweeps never see each other.
        let user_parts: Vec<String> = USER_FIRST.iter().chain(USER_LAST).map(|s| s.to_lowercase()).collect();
        let contact_parts: Vec<String> =
            CONTACT_FIRST.iter().map(|s| s.to_lowercase()).chain((0..384).map(|i| surname(i).to_lowercase())).collect();
        for u in &user_parts {
            for c in &contact_parts {
                assert!(!u.contains(c.as_str()) && !c.contains(u.as_str()), "{u} / {c}");
            }
        }
    }

    #[test]
    fn phones_are_unique_per_country() {
        for country in Country::ALL {
            let phones: HashSet<String> = (0..4000).map(|k| country.phone(k)).collect();
            assert_eq!(phones.len(), 4000, "{country:?}");
        }
    }
}
