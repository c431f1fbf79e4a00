//! Deterministic demo datasets: tweets and emails whose people, tags and
//! places recur across records, so a graph of them has structure. The same
//! kind, count and seed always give the same records. Used by the `datagen`
//! binary (the shipped demo data, the 100,000-record benchmark set) and the
//! benchmarks.

use serde_json::{json, Value};

/// Which dataset to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Tweets,
    Emails,
}

/// `count` records of `kind`, generated lazily.
pub fn records(kind: Kind, count: usize, seed: u64) -> impl Iterator<Item = Value> {
    let mut rng = Rng(seed);
    let pool = people(match kind {
        Kind::Tweets => 180,
        Kind::Emails => 120,
    });
    (0..count).map(move |i| match kind {
        Kind::Tweets => tweet(&mut rng, i, count, &pool),
        Kind::Emails => email(&mut rng, i, count, &pool),
    })
}

/// SplitMix64: tiny, fast, and stable across versions (unlike library RNGs).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// An index skewed towards the start: a few values are very common.
    fn skewed(&mut self, n: usize) -> usize {
        let r = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((r * r * r) * n as f64) as usize % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const FIRST: &[&str] = &[
    "Anna", "Bram", "Chloe", "Daan", "Emma", "Finn", "Greta", "Hugo", "Iris", "Jonas", "Kim",
    "Lars", "Mila", "Noah", "Olivia", "Pieter", "Quinn", "Rosa", "Sven", "Tess", "Umar", "Vera",
    "Wout", "Xena", "Yara", "Zeno",
];
const LAST: &[&str] = &[
    "de Vries", "Jansen", "Bakker", "Visser", "Smit", "Meijer", "Mulder", "Bos", "Vos", "Peters",
    "Hendriks", "Dekker", "Brouwer", "Dijkstra", "Kok", "Janssen",
];
const CITIES: &[&str] = &[
    "Amsterdam",
    "Rotterdam",
    "The Hague",
    "Utrecht",
    "Eindhoven",
    "Groningen",
    "Berlin",
    "Brussels",
    "Paris",
    "London",
    "Istanbul",
    "Antwerp",
    "Leiden",
    "Delft",
    "Haarlem",
    "Nijmegen",
];
const TAGS: &[&str] = &[
    "elections",
    "climate",
    "opendata",
    "privacy",
    "security",
    "football",
    "housing",
    "energy",
    "rust",
    "osint",
    "journalism",
    "eu",
    "budget",
    "transport",
    "health",
    "ai",
    "farming",
    "water",
    "culture",
    "startups",
    "bitcoin",
    "science",
    "music",
    "weather",
    "education",
    "tax",
    "migration",
    "defense",
    "space",
    "art",
];
const PHRASES: &[&str] = &[
    "Just read the new report on",
    "Strong debate tonight about",
    "Can anyone explain the latest news on",
    "Great turnout at the meetup on",
    "Worried about where we are heading with",
    "Thread: what we learned this week about",
    "Interesting interview with Wilders on",
    "Live from the conference on",
    "New numbers published today about",
    "Hot take on",
];
const LANGS: &[&str] = &["en", "en", "en", "nl", "nl", "de", "fr", "tr"];
const SOURCES: &[&str] = &[
    "Twitter Web Client",
    "Twitter for iPhone",
    "Twitter for Android",
    "TweetDeck",
];

const ORGS: &[&str] = &[
    "acme.example",
    "globex.example",
    "initech.example",
    "umbrella.example",
    "hooli.example",
    "stark.example",
    "wayne.example",
    "tyrell.example",
];
const TOPICS: &[&str] = &[
    "Q3 budget review",
    "Contract renewal",
    "Board meeting agenda",
    "Invoice 4471",
    "Shipment delayed",
    "Security incident follow-up",
    "Offsite planning",
    "Hiring plan",
    "Vendor shortlist",
    "Audit findings",
    "Product launch",
    "Legal hold notice",
    "Wire transfer",
    "Password reset",
    "Press statement draft",
    "Merger due diligence",
    "Quarterly forecast",
    "Customer escalation",
    "Travel expenses",
    "Data request",
];
const BODY: &[&str] = &[
    "Please find the details below and let me know what you think.",
    "Can we discuss this in tomorrow's call?",
    "I have attached the latest version for your review.",
    "As agreed, the numbers are final unless someone objects by Friday.",
    "Forwarding this for visibility; no action needed yet.",
    "We need a decision on this before the end of the week.",
    "Thanks for the quick turnaround, this looks good to me.",
    "Looping in legal, please keep this confidential.",
];
const ATTACHMENTS: &[&str] = &[
    "budget.xlsx",
    "contract.pdf",
    "agenda.docx",
    "invoice.pdf",
    "slides.pptx",
    "report.pdf",
    "photo.jpg",
];

/// A timestamp in 2024, roughly in record order with jitter.
fn timestamp(rng: &mut Rng, i: usize, count: usize) -> String {
    let year_seconds: u64 = 365 * 24 * 3600;
    let base = (i as u64 * year_seconds) / count.max(1) as u64;
    let jitter = rng.next() % (6 * 3600);
    let t = (base + jitter).min(year_seconds - 1);
    let start = time::macros::datetime!(2024-01-01 0:00 UTC);
    let at = start + time::Duration::seconds(t as i64);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

struct Person {
    first: &'static str,
    last: &'static str,
}

fn people(n: usize) -> Vec<Person> {
    (0..n)
        .map(|i| Person {
            first: FIRST[i % FIRST.len()],
            last: LAST[(i / FIRST.len() + i) % LAST.len()],
        })
        .collect()
}

fn handle(p: &Person, i: usize) -> String {
    format!(
        "{}{}{}",
        p.first.to_lowercase(),
        p.last
            .replace(' ', "")
            .to_lowercase()
            .chars()
            .next()
            .unwrap_or('x'),
        i
    )
}

fn tweet(rng: &mut Rng, i: usize, count: usize, users: &[Person]) -> Value {
    let author = rng.skewed(users.len());
    let screen_name = handle(&users[author], author);
    let mentions: Vec<String> = (0..rng.below(3))
        .map(|_| {
            let m = rng.skewed(users.len());
            handle(&users[m], m)
        })
        .filter(|m| *m != screen_name)
        .collect();
    let hashtags: Vec<&str> = (0..1 + rng.below(3))
        .map(|_| TAGS[rng.skewed(TAGS.len())])
        .collect();
    let mut hashtags_unique = hashtags.clone();
    hashtags_unique.dedup();
    let mut text = format!("{} {}", rng.pick(PHRASES), hashtags[0]);
    for tag in &hashtags_unique {
        text.push_str(&format!(" #{tag}"));
    }
    for m in &mentions {
        text.push_str(&format!(" @{m}"));
    }
    let reply_to = if rng.chance(30) {
        let r = rng.skewed(users.len());
        Value::from(handle(&users[r], r))
    } else {
        Value::Null
    };
    json!({
        "id": format!("{}", 1_700_000_000_000_000_000u64 + i as u64 * 7919),
        "created_at": timestamp(rng, i, count),
        "text": text,
        "lang": rng.pick(LANGS),
        "source": rng.pick(SOURCES),
        "user": {
            "screen_name": screen_name,
            "name": format!("{} {}", users[author].first, users[author].last),
            // The address the same person writes e-mails from in the emails
            // dataset (person `i` is the same in both): the link between them.
            "email": address(&users[author], author),
            "location": CITIES[(author * 7) % CITIES.len()],
            "followers_count": 10 + (users.len() - author) * 37 + author % 13,
            "verified": author % 11 == 0,
        },
        "mentions": mentions,
        "hashtags": hashtags_unique,
        "in_reply_to_screen_name": reply_to,
        "retweet_count": rng.skewed(500),
        "favorite_count": rng.skewed(2000),
    })
}

fn address(p: &Person, i: usize) -> String {
    let org = ORGS[(i * 3) % ORGS.len()];
    format!(
        "{}.{}@{org}",
        p.first.to_lowercase(),
        p.last.replace(' ', "").to_lowercase()
    )
}

fn email(rng: &mut Rng, i: usize, count: usize, staff: &[Person]) -> Value {
    let sender = rng.skewed(staff.len());
    let from = address(&staff[sender], sender);
    let recipients = |n: usize, rng: &mut Rng| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for _ in 0..n {
            let r = rng.skewed(staff.len());
            let a = address(&staff[r], r);
            if a != from && !out.contains(&a) {
                out.push(a);
            }
        }
        out
    };
    let to = recipients(1 + rng.below(3), rng);
    let cc = if rng.chance(40) {
        recipients(1 + rng.below(2), rng)
    } else {
        Vec::new()
    };
    let topic = rng.skewed(TOPICS.len());
    let reply = rng.chance(45);
    let attachments: Vec<&str> = if rng.chance(25) {
        vec![rng.pick(ATTACHMENTS)]
    } else {
        Vec::new()
    };
    let body = format!("{} {}", rng.pick(BODY), rng.pick(BODY));
    json!({
        "id": format!("msg-{:06}", i),
        "date": timestamp(rng, i, count),
        "from": from,
        "to": to,
        "cc": cc,
        "subject": format!("{}{}", if reply { "Re: " } else { "" }, TOPICS[topic]),
        "thread": format!("thread-{topic:02}-{}", i % 7),
        "body": body,
        "size_bytes": 2_000 + rng.below(250_000),
        "has_attachment": !attachments.is_empty(),
        "attachments": attachments,
        "organisation": from.rsplit('@').next().unwrap_or_default(),
    })
}
