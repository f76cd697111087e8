#!/usr/bin/env python3
"""The client side of SCRAM for tests/tests/enhanced_auth.rs, computed by
scramp (PyPI), an implementation independent of Portcullis.

Usage: scram_client.py MECHANISM USERNAME PASSWORD

Line protocol on stdout/stdin (SCRAM messages are ASCII without newlines):
  prints client-first; reads server-first; prints client-final (or
  "error <why>"); reads server-final; prints "verified" when the server's
  signature checks out, else "refused <why>".
"""
import sys

from scramp import ScramClient, ScramException


def main():
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
