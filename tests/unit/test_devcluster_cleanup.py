"""`down`'s clean-up of kube-router's firewall, on real iptables and ipset in a private network namespace.

kube-router leaves its chains and ipsets behind on any exit (and its `--cleanup-config`
removes none of them in v2.1.0), so the dev cluster removes them itself, by prefix,
rules before the sets they reference. A fresh network namespace (`unshare -n`) has its
own iptables tables and ipsets, so this runs without touching the machine's.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SETUP = """
set -e
iptables -N KUBE-ROUTER-FORWARD
iptables -I FORWARD 1 -m comment --comment "kube-router netpol - TEMCG2JMHZYE7H7T" -j KUBE-ROUTER-FORWARD
iptables -N KUBE-POD-FW-ABCDEF
iptables -N KUBE-NWPLCY-ABCDEF
ipset create KUBE-SRC-ABCDEFGHIJKLMNOP hash:ip
ipset create KUBE-DST-ABCDEFGHIJKLMNOP hash:ip
iptables -A KUBE-ROUTER-FORWARD -j KUBE-POD-FW-ABCDEF
iptables -A KUBE-POD-FW-ABCDEF -j KUBE-NWPLCY-ABCDEF
iptables -A KUBE-NWPLCY-ABCDEF -m set --match-set KUBE-SRC-ABCDEFGHIJKLMNOP src \
  -m set --match-set KUBE-DST-ABCDEFGHIJKLMNOP dst -j ACCEPT
# Someone else's: kept.
iptables -N OTHER-CHAIN
iptables -A FORWARD -j OTHER-CHAIN
ipset create other-set hash:ip
iptables -A OTHER-CHAIN -m set --match-set other-set src -j ACCEPT
"""
CLEANUP = textwrap.dedent(
    """
    from mlkube_devcluster import node
    print(node.remove_chains("iptables"), node.remove_ipsets("ipset"))
    """
)


def test_kube_routers_chains_and_ipsets_are_removed_and_nothing_else() -> None:
    script = f"{SETUP}\n{sys.executable} -c '{CLEANUP}'\necho ---\niptables -S\necho ---\nipset list -n\n"
    proc = subprocess.run(["unshare", "-n", "bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    counts, rules, sets = proc.stdout.split("---\n")
    assert counts.split() == ["3", "2"]
    assert "KUBE-" not in rules
    assert "-A FORWARD -j OTHER-CHAIN" in rules and "--match-set other-set src" in rules
    assert sets.split() == ["other-set"]
