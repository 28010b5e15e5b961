"""Reference side of the timelock cross-check: PyPI's bittensor-drand (the chain's own tle
implementation, wrapped). Reads one JSON request on stdin, writes one JSON answer."""
import json
import sys
import time

import bittensor_drand as bd

req = json.load(sys.stdin)
op = req["op"]
if op == "encrypt_at_round":
    wrapped, round_ = bd.encrypt_at_round(bytes.fromhex(req["data"]), req["round"])
    out = {"user_data": wrapped.hex(), "round": round_}
elif op == "decrypt_with_signature":
    try:
        plain = bd.decrypt_with_signature(bytes.fromhex(req["user_data"]), req["signature"])
        out = {"plain": bytes(plain).hex()}
    except Exception as e:  # the answer, not a crash: the Rust side asserts on it
        out = {"error": str(e)}
elif op == "commit_v2":
    before = time.time()
    ct, round_ = bd.get_encrypted_commit_v2(
        req["uids"], req["weights"], req["version_key"], req["last_epoch_block"],
        req["pending_epoch_at"], req["subnet_epoch_index"], req["tempo"],
        req["blocks_since_last_step"], req["current_block"], req["reveal_period_epochs"],
        12.0, bytes.fromhex(req["hotkey"]))
    after = time.time()
    out = {"ciphertext": bytes(ct).hex(), "round": round_, "before": before, "after": after}
elif op == "commitment":
    before = time.time()
    ct, round_ = bd.get_encrypted_commitment(req["data"], req["blocks_until_reveal"], 12.0)
    after = time.time()
    out = {"ciphertext": bytes(ct).hex(), "round": round_, "before": before, "after": after}
else:
    raise SystemExit(f"unknown op {op}")
json.dump(out, sys.stdout)
