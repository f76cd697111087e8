"""Keys and tokens for tests/tests/jwt*.rs, made by independent JOSE tools
(PyJWT and jwcrypto from PyPI), never by the broker's own crate.

Usage: make_tokens.py OUT_DIR [SUB] [EXP_SECONDS]
Writes OUT_DIR/<alg>.pub.pem (or <alg>.secret) and OUT_DIR/tokens.json:
{"<alg>": {"key": path, "cases": {"<case>": token, ...}}, ...}
Cases: valid (PyJWT), valid_jwcrypto, expired, not_yet_valid, wrong_audience,
wrong_key, alg_none, and for public-key algorithms confusion (HS256 signed
with the PEM public key as the HMAC secret).
"""
import base64
import json
import os
import sys
import time

import jwt  # PyJWT
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwcrypto import jwk as jc_jwk
from jwcrypto import jwt as jc_jwt

out = sys.argv[1]
sub = sys.argv[2] if len(sys.argv) > 2 else "dev1"
life = int(sys.argv[3]) if len(sys.argv) > 3 else 3600
now = int(time.time())


# Two RSA pairs (signing, wrong) shared by the six RSA algorithms: RSA key
# generation is slow, and each test broker pins one algorithm.
RSA_SIGN = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_WRONG = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key(alg, wrong=False):
    if alg.startswith(("RS", "PS")):
        return RSA_WRONG if wrong else RSA_SIGN
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "ES384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(alg)


def pem_private(k):
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


def pem_public(k):
    return k.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)


def claims(**over):
    c = {"sub": sub, "aud": "mqtt", "iat": now, "exp": now + life}
    c.update(over)
    return c


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwcrypto_token(alg, key, c):
    t = jc_jwt.JWT(header={"alg": alg, "typ": "JWT"}, claims=c)
    t.make_signed_token(key)
    return t.serialize()


result = {}
for alg in ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
            "ES256", "ES384", "EdDSA"]:
    cases = {}
    if alg.startswith("HS"):
        secret = os.urandom(32).hex()
        other = os.urandom(32).hex()
        path = os.path.join(out, f"{alg}.secret")
        with open(path, "w") as f:
            f.write(secret)
        sign_key, wrong_key = secret, other
        jc_key = jc_jwk.JWK(kty="oct", k=b64url(secret.encode()))
    else:
        k = private_key(alg)
        wrong = private_key(alg, wrong=True)
        path = os.path.join(out, f"{alg}.pub.pem")
        with open(path, "wb") as f:
            f.write(pem_public(k))
        sign_key, wrong_key = pem_private(k), pem_private(wrong)
        jc_key = jc_jwk.JWK.from_pem(pem_private(k))
        # Algorithm confusion: HS256 with the public key's PEM text as the
        # HMAC secret (PyJWT refuses to do this; jwcrypto signs with any
        # oct key).
        confusion_key = jc_jwk.JWK(kty="oct", k=b64url(pem_public(k)))
        cases["confusion"] = jwcrypto_token("HS256", confusion_key, claims())
    cases["valid"] = jwt.encode(claims(), sign_key, algorithm=alg)
    cases["valid_jwcrypto"] = jwcrypto_token(alg, jc_key, claims())
    cases["expired"] = jwt.encode(claims(iat=now - 7200, exp=now - 3600), sign_key, algorithm=alg)
    cases["not_yet_valid"] = jwt.encode(claims(nbf=now + 3600), sign_key, algorithm=alg)
    cases["wrong_audience"] = jwt.encode(claims(aud="web"), sign_key, algorithm=alg)
    cases["wrong_key"] = jwt.encode(claims(), wrong_key, algorithm=alg)
    cases["alg_none"] = jwt.encode(claims(), None, algorithm="none")
    result[alg] = {"key": path, "cases": cases}

with open(os.path.join(out, "tokens.json"), "w") as f:
    json.dump(result, f)
