"""Writes customers.csv, the example plugin's data: 3,000 made-up
customers, the same on every run."""

import csv
import random

FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Ken",
         "Radia", "Tim", "Sophie", "Dennis", "Karen", "Linus", "Hedy", "Claude", "Annie", "Niklaus"]
LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Hamilton",
        "Thompson", "Perlman", "Berners-Lee", "Wilson", "Ritchie", "Jones", "Torvalds", "Lamarr", "Shannon",
        "Easley", "Wirth"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell", "Cyberdyne"]
CITIES = [("Amsterdam", "NL"), ("Ghent", "BE"), ("Utrecht", "NL"), ("Lyon", "FR"), ("Berlin", "DE"),
          ("Porto", "PT"), ("Bologna", "IT"), ("Krakow", "PL"), ("Aarhus", "DK"), ("Tartu", "EE")]
NOTES = ["asked for a refund", "prefers e-mail", "renewed the yearly plan", "reported a billing issue",
         "wants the premium tier", "met at the trade fair", "referred by a partner", "late payments"]


def main():
    rng = random.Random(2026)
    with open("customers.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "name", "email", "company", "city", "country", "joined", "orders", "notes"])
        for i in range(1, 3001):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            company = rng.choice(COMPANIES)
            city, country = rng.choice(CITIES)
            joined = f"20{rng.randint(15, 26):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            email = f"{first}.{last}@{company}.example".lower()
            writer.writerow([f"cust-{i}", f"{first} {last}", email, company, city, country, joined,
                             rng.randint(0, 250), rng.choice(NOTES)])


if __name__ == "__main__":
    main()
