"""The query subset of tributary_plugin.query, against records in memory."""

import doctest
import unittest

import tributary_plugin.query as query
from tributary_plugin import BadQuery

PEOPLE = [
    {"id": "1", "name": "Ada Lovelace", "team": "red", "address": {"city": "London"}, "tags": ["math", "poetry"]},
    {"id": "2", "name": "Alan Turing", "team": "blue", "address": {"city": "Wilmslow"}, "tags": ["math"]},
    {"id": "3", "name": "Grace Hopper", "team": "red", "address": {"city": "Arlington"}, "tags": []},
]


def ids(q):
    match = query.parse(q)
    return [p["id"] for p in PEOPLE if match(p)]


class QueryTest(unittest.TestCase):
    def test_terms_fields_and_phrases(self):
        self.assertEqual(ids("*"), ["1", "2", "3"])
        self.assertEqual(ids(""), ["1", "2", "3"])
        self.assertEqual(ids("ada"), ["1"])
        self.assertEqual(ids("team:red"), ["1", "3"])
        self.assertEqual(ids("address.city:london"), ["1"])
        self.assertEqual(ids("address.*:wilmslow"), ["2"])
        self.assertEqual(ids('name:"grace hopper"'), ["3"])
        self.assertEqual(ids('"hopper grace"'), [])
        self.assertEqual(ids("tags:math"), ["1", "2"])
        self.assertEqual(ids("tags:*"), ["1", "2"])
        self.assertEqual(ids("name:a*"), ["1", "2"])

    def test_operators_as_lucene_combines_them(self):
        self.assertEqual(ids("ada alan"), ["1", "2"])
        self.assertEqual(ids("team:red AND tags:math"), ["1"])
        self.assertEqual(ids("team:red OR tags:math"), ["1", "2", "3"])
        self.assertEqual(ids("+team:red -ada"), ["3"])
        self.assertEqual(ids("team:red NOT ada"), ["3"])
        self.assertEqual(ids("-team:red"), ["2"])
        self.assertEqual(ids("(ada OR alan) AND tags:math"), ["1", "2"])
        self.assertEqual(ids("+team:red ada"), ["1", "3"])

    def test_unreadable_queries_say_where(self):
        for q, message in [
            ("(a b", "missing closing parenthesis at character 4"),
            ("a)", "unexpected `)` at character 1"),
            ('"open', "missing closing quote at character 5"),
            ("AND a", "`AND` needs a clause before it"),
            ("a OR", "`OR` needs a clause after it"),
            ("date:[1 TO 2]", "ranges, `_exists_`, fuzzy"),
            ("amount:>49000", "ranges, `_exists_`, fuzzy"),
            ("_exists_:city", "ranges, `_exists_`, fuzzy"),
            ("name:", "`name:` needs a value"),
        ]:
            with self.assertRaises(BadQuery, msg=q) as raised:
                query.parse(q)
            self.assertIn(message, str(raised.exception), q)


def load_tests(loader, tests, ignore):
    tests.addTests(doctest.DocTestSuite(query))
    return tests


if __name__ == "__main__":
    unittest.main()
