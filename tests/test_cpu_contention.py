"""The thread governor with scripted scheduler counters and clock: it lowers the llama.cpp thread
count while the engine thread waits for a core, raises it again once the cores it gave up sit
idle, and otherwise leaves the engine alone. The real thing: tests/test_run_e2e.py (a busy CPU)."""

from __future__ import annotations

from dataclasses import dataclass, field

from qwencli.backends.cpu_contention import WINDOW, ThreadGovernor


@dataclass
class Machine:
    """Counters that move as the script says, one step per token."""

    waits: list[float] = field(default_factory=list)  # share of each step the thread waited for a core
    idle: list[float] = field(default_factory=list)  # idle cores during each step
    step_seconds: float = WINDOW
    now: float = 0.0
    waited_ns: int = 0
    idle_total: float = 0.0
    available: bool = True
    cores: int = 2
    others: list[int] = field(default_factory=list)  # other programs' runnable threads, one per look
    others_after: int = 0  # ... once that list is used up

    def others_running(self):
        if not self.available:
            return None
        return self.others.pop(0) if self.others else self.others_after

    def clock(self) -> float:
        return self.now

    def thread_wait(self):
        return self.waited_ns if self.available else None

    def idle_seconds(self):
        return self.idle_total if self.available else None

    def step(self, i: int) -> None:
        self.now += self.step_seconds
        self.waited_ns += int((self.waits[i] if i < len(self.waits) else 0.0) * self.step_seconds * 1e9)
        self.idle_total += (self.idle[i] if i < len(self.idle) else 0.0) * self.step_seconds


def run(machine: Machine, full: int, tokens: int, **kwargs) -> tuple[list[int], ThreadGovernor]:
    applied: list[int] = []
    governor = ThreadGovernor(full, applied.append, counters=machine, clock=machine.clock, **kwargs)

    def produce():
        for i in range(tokens):
            machine.step(i)  # the decode of token i
            yield i

    assert list(governor.watch(produce())) == list(range(tokens))  # tokens pass unchanged, in order
    return applied, governor


def test_a_crowded_cpu_costs_a_thread_and_a_free_one_gives_it_back():
    machine = Machine(waits=[0.5, 0.0, 0.0], idle=[0.0, 0.0, 1.0], others=[0])
    applied, governor = run(machine, full=2, tokens=3)
    assert applied == [1, 2]  # crowded → 1; still busy at 1 → stays; a core idle → 2 again
    assert governor.threads == 2


def test_a_quiet_machine_is_left_alone():
    machine = Machine(waits=[0.02] * 20, idle=[1.5] * 20)
    applied, governor = run(machine, full=2, tokens=20)
    assert applied == [] and governor.threads == 2


def test_busy_cores_keep_the_lower_count_across_replies():
    machine = Machine(waits=[0.5], idle=[0.0] * 10, others=[0, 0])  # quiet as it starts, then busy
    applied, governor = run(machine, full=2, tokens=10)
    assert applied == [1]
    machine.others_after, machine.idle = 1, []
    more = list(governor.watch(iter(range(5))))  # the next reply starts where this one ended
    assert more == list(range(5)) and governor.threads == 1


def test_never_below_one_thread_nor_above_the_start():
    machine = Machine(waits=[0.9] * 10, idle=[0.0] * 10, cores=4)
    applied, _ = run(machine, full=4, tokens=10)
    assert applied == [3, 2, 1]
    machine = Machine(waits=[0.5] + [0.0] * 9, idle=[0.0] + [8.0] * 9, cores=8)
    applied, governor = run(machine, full=4, tokens=10)
    assert applied == [3, 4] and governor.threads == 4


def test_it_looks_once_per_window_not_per_token():
    applied, _ = run(Machine(waits=[0.5] * 8, step_seconds=WINDOW / 8), full=2, tokens=7)  # 8 tokens make a window
    assert applied == []
    applied, _ = run(Machine(waits=[0.5] * 8, step_seconds=WINDOW / 8), full=2, tokens=8)
    assert applied == [1]


def test_a_thread_count_the_user_gave_and_missing_counters_change_nothing():
    assert run(Machine(waits=[0.9] * 5), full=2, tokens=5, fixed=True)[0] == []
    assert run(Machine(waits=[0.9] * 5, available=False), full=2, tokens=5)[0] == []
    assert run(Machine(waits=[0.9] * 5), full=1, tokens=5)[0] == []


def test_before_the_prompt_other_programs_running_leave_fewer_cores():
    applied, governor = run(Machine(others=[1, 1], idle=[0.0] * 3), full=2, tokens=3)
    assert applied == [1]  # before the first token: the prompt is read by one thread
    applied, governor = run(Machine(others=[3, 3], cores=4, idle=[0.0] * 3), full=4, tokens=3)
    assert applied == [1]


def test_a_moment_seen_once_changes_nothing_and_free_cores_give_threads_back_at_once():
    assert run(Machine(others=[1, 0]), full=2, tokens=3)[0] == []  # a busy moment
    machine = Machine(others=[1, 1, 0, 0], idle=[0.0] * 3)
    applied, governor = run(machine, full=2, tokens=3)
    assert applied == [1]
    assert list(governor.watch(iter(range(2)))) == [0, 1]  # the next reply: the other program has gone
    assert applied == [1, 2] and governor.threads == 2
    machine.others = [1, 0]  # busy then quiet: stays
    list(governor.watch(iter(range(2))))
    assert applied == [1, 2]
