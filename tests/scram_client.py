#!/usr/bin/env python3
"""The client side of SCRAM for tests/tests/enhanced_auth.rs, computed by
scramp (PyPI), an implementation independent of Portcullis.

Usage: scram_client.py MECHANISM USERNAME PASSWORD
       scram_client.py --make MECHANISM PASSWORD ITERATIONS

Line protocol on stdout/stdin (SCRAM messages are ASCII without newlines):
  prints client-first; reads server-first; prints client-final (or
  "error <why>"); reads server-final; prints "verified" when the server's
  signature checks out, else "refused <why>".
"""
import sys

from scramp import ScramClient, ScramException, ScramMechanism


def make(mechanism, password, iterations):
    """Prints a stored credential as scramp derives it: hex salt, StoredKey,
    ServerKey (what a database or an HTTP endpoint keeps)."""
    salt, stored_key, server_key, _ = ScramMechanism(mechanism).make_auth_info(
        password, iteration_count=int(iterations)
    )
    print(salt.hex(), stored_key.hex(), server_key.hex())


def main():
    if sys.argv[1] == "--make":
        make(*sys.argv[2:5])
        return
    mechanism, username, password = sys.argv[1:4]
    client = ScramClient([mechanism], username, password)
    print(client.get_client_first(), flush=True)
    try:
        client.set_server_first(sys.stdin.readline().rstrip("\n"))
        print(client.get_client_final(), flush=True)
    except ScramException as e:
        print("error %s" % e, flush=True)
        return
    try:
        client.set_server_final(sys.stdin.readline().rstrip("\n"))
        print("verified", flush=True)
    except ScramException as e:
        print("refused %s" % e, flush=True)


if __name__ == "__main__":
    main()
