"""The enforcement layer: the Guard (check → approve → execute → record), the audit log
writer, and the ports (Protocols) that stores implement."""
