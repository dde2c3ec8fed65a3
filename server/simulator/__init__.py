"""A local, real HTTP stand-in for ElevenLabs: dev runs, tests and benchmarks use it through the
official SDK by pointing `base_url` at it. See `create_simulator_app` and `SimulatorState`."""

from server.simulator.app import CACHE, STATE, RunningSimulator, create_simulator_app, start_simulator
from server.simulator.state import FAULTS, Fault, SimKey, SimulatorState

__all__ = ["CACHE", "FAULTS", "STATE", "Fault", "RunningSimulator", "SimKey", "SimulatorState",
           "create_simulator_app", "start_simulator"]
