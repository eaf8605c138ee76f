package handoff

// ReadBatch is readBatch, for the tests.
const ReadBatch = readBatch
