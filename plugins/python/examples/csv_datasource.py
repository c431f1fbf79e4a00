"""An example remote datasource: the rows of a CSV file, searched with
the query tributary parsed for it (``request.matcher``).

    TRIBUTARY_URL=ws://127.0.0.1:8080/ws/services TRIBUTARY_TOKEN=… \\
        python3 csv_datasource.py customers.csv --id customers --name Customers

Column types are inferred from the values (whole numbers ``long``, numbers
``double``, ``YYYY-MM-DD`` dates ``date``, other strings ``text``); the first column named ``id`` (or ``--id-column``)
gives each record its id, else its row number does.
"""

import argparse
import csv
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tributary_plugin import Datasource, Field, Page  # noqa: E402

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def column_type(values):
    present = [v for v in values if v != ""]
    if not present:
        return "keyword"
    for kind, test in (("long", int), ("double", float)):
        try:
            for value in present:
                test(value)
            return kind
        except ValueError:
            pass
    if all(DATE.match(v) for v in present):
        return "date"
    # Words, as Elasticsearch maps strings: `city:ghent` finds "Ghent".
    return "text"


def typed(value, kind):
    if value == "":
        return None
    if kind == "long":
        return int(value)
    if kind == "double":
        return float(value)
    return value


class CsvDatasource(Datasource):
    def __init__(self, path, id, name=None, id_column="id"):
        super().__init__()
        self.id = id
        self.name = name or id
        with open(path, newline="", encoding="utf-8") as source:
            rows = list(csv.DictReader(source))
        columns = list(rows[0].keys()) if rows else []
        types = {c: column_type([r[c] for r in rows]) for c in columns}
        self.fields = [Field(c, types[c]) for c in columns if c != id_column]
        self.records = []
        for number, row in enumerate(rows, start=1):
            record_id = row.get(id_column) or str(number)
            fields = {c: typed(row[c], types[c]) for c in columns if c != id_column}
            self.records.append({"id": record_id, "fields": fields})

    def search(self, request):
        # The query as tributary parsed it, evaluated with the declared
        # types as tributary's embedded datasource would; a query tributary
        # could not parse, or a construct the package does not evaluate
        # (a regular expression, a fuzzy term), raises BadQuery, which the
        # analyst sees in words.
        match = request.matcher(self.fields)
        hits = [record for record in self.records if match(record["fields"])]
        return Page(total=len(hits), results=hits[request.from_ : request.from_ + request.size])


def main():
    arguments = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    arguments.add_argument("csv", help="the CSV file (a header row, then records)")
    arguments.add_argument("--id", default=None, help="the datasource id (default: the file's name)")
    arguments.add_argument("--name", default=None, help="the display name (default: the id)")
    arguments.add_argument("--id-column", default="id", help="the column holding record ids")
    options = arguments.parse_args()
    id = options.id or os.path.splitext(os.path.basename(options.csv))[0]
    CsvDatasource(options.csv, id, options.name, options.id_column).run()


if __name__ == "__main__":
    main()
