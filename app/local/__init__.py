"""Local stand-ins for the cloud: an embedded AWS emulator and a DogStatsD receiver.

Used by the demo, the tests and the benchmark; the forwarder itself never imports this package.
"""
