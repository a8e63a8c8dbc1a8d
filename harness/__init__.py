"""What the tests and the benchmarks share: starting the emulator, the relay and Redis as real
processes and waiting for their ready line (processes, emulator, relay, stacks), a client of the
emulator's API, a patient tus client (tusclient) and test files (relay.make_file).

Neither pytest nor anything under tests/ is imported here: tests/support/ holds what only the
tests use (fixtures, fakes, the browser, the webhook receiver, the junk proxy), bench/ what only
the benchmarks use.
"""
