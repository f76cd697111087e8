"""Runs Paho's interoperability client tests against 127.0.0.1:PORT.

usage: paho_interop.py INTEROP_DIR PORT v3|v5 [TestName ...]
Prints one summary line: `paho <v>: run N, failures F, errors E`.
"""
import logging
import sys
import unittest

interop, port, which, names = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
sys.path.insert(0, interop)
if which == "v5":
    import client_test5 as t
    t.topic_prefix = "client_test5/"
else:
    import client_test as t
t.host, t.port = "127.0.0.1", port
t.topics = ("TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA")
t.wildtopics = ("TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#")
t.nosubscribe_topics = ("test/nosubscribe",)
logging.getLogger().setLevel(logging.ERROR)
if hasattr(t, "setData"):
    original = t.setData

    def set_data():
        original()
        t.host, t.port = "127.0.0.1", port

    t.setData = set_data
loader = unittest.TestLoader()
if names:
    suite = loader.loadTestsFromNames(["Test." + n for n in names], t)
else:
    suite = loader.loadTestsFromTestCase(t.Test)
result = unittest.TextTestRunner(verbosity=2).run(suite)
print(f"paho {which}: run {result.testsRun}, failures {len(result.failures)}, errors {len(result.errors)}")
for test, _ in result.failures + result.errors:
    print(f"paho {which}: FAILED {test.id()}")
sys.exit(0 if result.wasSuccessful() else 1)
