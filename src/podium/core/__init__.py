"""What a call is, with no HTTP in it: who calls (access), submitting and waiting (calls), the
workers (workers), the records they pass around (records) and the errors (errors)."""
