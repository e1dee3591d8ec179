"""Test harness: loopback sshd hosts, inventories, playbook runs, borg read-back."""
