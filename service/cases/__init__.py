"""Cases: an investigator's cases and their immutable captures (`service`), and the audit log's
check (`audit`: the hash chain and its signatures). Evidence exports are `service.evidence`'s."""
