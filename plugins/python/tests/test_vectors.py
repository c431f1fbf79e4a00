"""The conformance kit's query vectors (plugins/conformance/vectors):
``query.evaluate`` gives, for each parsed query, the total tributary's
embedded datasource gives, or refuses the query in words — never another
total."""

import json
import os
import unittest

import tributary_plugin.query as query
from tributary_plugin import BadQuery

VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "conformance", "vectors")


class VectorsTest(unittest.TestCase):
    def test_totals_equal_tributarys(self):
        with open(os.path.join(VECTORS, "records.ndjson"), encoding="utf-8") as source:
            records = [json.loads(line) for line in source if line.strip()]
        with open(os.path.join(VECTORS, "queries.json"), encoding="utf-8") as source:
            vectors = json.load(source)
        wrong, refused = [], []
        for vector in vectors:
            try:
                match = query.evaluate(vector["parsed"])
                total = sum(1 for r in records if match(r))
            except query.Unsupported as unsupported:
                refused.append(f"{vector['query']}: {unsupported}")
                continue
            except BadQuery:
                total = None
            if total != vector["total"]:
                wrong.append(f"`{vector['query']}`: {total}, tributary {vector['total']}")
        self.assertEqual(wrong, [], "\n".join(wrong))
        # Every construct of the vectors is evaluated here.
        self.assertEqual(refused, [])


if __name__ == "__main__":
    unittest.main()
