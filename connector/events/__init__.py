"""What a record is and becomes: Avro plumbing, decoding, encoding, the Segment-to-Inkit mapping."""
