"""`python -m server simulator`: run the ElevenLabs simulator as its own process.

It is a development tool and refuses nothing; whether the server may *use* it is the
server's decision (ALLOW_SIMULATOR), not this command's.
"""

from __future__ import annotations

import argparse

from server.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser("simulator", help="run a local ElevenLabs simulator (dev and tests)")
    cmd.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    cmd.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    cmd.add_argument("--key", action="append", default=[], metavar="API_KEY",
                     help="an API key the simulator accepts (repeatable; more via POST /_sim/keys)")
    cmd.add_argument("--character-limit", type=int, default=100_000, help="quota of each --key per period")
    cmd.add_argument("--max-concurrency", type=int, default=5, help="concurrent requests allowed per --key")
    cmd.add_argument("--tier", default="creator", help="subscription tier reported for each --key")
    cmd.add_argument("--voice", action="append", default=[], metavar="NAME",
                     help="a cloned voice every --key owns (repeatable)")
    cmd.add_argument("--same-takes", action="store_true",
                     help="answer every request for one prompt with the same cached take instead of a new one "
                          "(benchmarks: measure the proxy, not the synthesis)")
    cmd.set_defaults(func=cmd_simulator)

    llm = subparsers.add_parser("llm-simulator", help="run a local OpenAI/Anthropic/Gemini simulator (dev and tests)")
    llm.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    llm.add_argument("--port", type=int, default=8767, help="port to listen on (default 8767)")
    llm.add_argument("--key", action="append", default=[], metavar="PROVIDER=API_KEY",
                     help="a key the simulator accepts for openai, anthropic or gemini (repeatable; more via POST /_sim/keys)")
    llm.set_defaults(func=cmd_llm_simulator)


def cmd_simulator(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from server.simulator import SimulatorState, create_simulator_app

    state = SimulatorState()
    for key in args.key:
        state.add_key(key, character_limit=args.character_limit, max_concurrency=args.max_concurrency,
                      tier=args.tier, voices=args.voice)
    print(f"ElevenLabs simulator on http://{args.host}:{args.port} with {len(args.key)} key(s)", flush=True)
    # No access log: request lines would be noise at benchmark rates.
    web.run_app(create_simulator_app(state, fresh_takes=not args.same_takes), host=args.host, port=args.port, access_log=None, print=None,
                shutdown_timeout=5)
    return 0


def cmd_llm_simulator(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from server.simulator.llm import LlmSimulatorState, base_urls, create_llm_simulator_app

    state = LlmSimulatorState()
    for item in args.key:
        provider, _, key = item.partition("=")
        state.add_key(provider.strip(), key.strip())
    url = f"http://{args.host}:{args.port}"
    print(f"LLM simulator on {url} with {len(args.key)} key(s); point the server at it with", flush=True)
    for name, value in base_urls(url).items():
        print(f"  {name.upper()}={value}", flush=True)
    web.run_app(create_llm_simulator_app(state), host=args.host, port=args.port, access_log=None, print=None,
                shutdown_timeout=5)
    return 0
