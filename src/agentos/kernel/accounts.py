"""Hierarchical accounts: budgets carved from the parent at spawn, returned at exit.

Pooled resources (tokens, tool_calls, usd, children, mem) live in a *bank*: the nearest
account on the path to the root that set a limit for that resource. A process whose quota
leaves a resource unset draws on its parent's bank. Charges are atomic: every resource is
checked before any is taken. USD is kept in integer nano-dollars, so conservation is exact:
for every pooled resource, the root's initial limit equals the sum of the balances of open
accounts plus everything used.
"""
from __future__ import annotations

from typing import Any

from ..abi.errors import BadArgument, QuotaExceeded
from ..abi.types import POOLED_RESOURCES, USD_SCALE, Quota

TOKENS, TOOL_CALLS, USD, CHILDREN, MEM = range(5)
_NO_QUOTA = Quota()
N_POOLED = len(POOLED_RESOURCES)


_NONES: tuple[None, ...] = (None,) * N_POOLED
_ZEROS: tuple[int, ...] = (0,) * N_POOLED


class BadAmount(BadArgument):
    """An amount an account cannot hold: not an int, or negative. Raised before anything is
    taken, so a refused charge leaves every balance as it was."""


class Account:
    __slots__ = ("pid", "limit", "balance", "used", "bank", "source", "closed", "forward")

    @classmethod
    def thin(cls, pid: int, bank: list["Account | None"]) -> "Account":
        """An account with no limits of its own: it draws on `bank` (shared, never mutated).
        Its limit/balance/source/forward are shared immutable tuples: it is never a bank."""
        a = cls.__new__(cls)
        a.pid = pid
        a.limit = _NONES  # type: ignore[assignment]
        a.balance = _ZEROS  # type: ignore[assignment]
        a.used = [0, 0, 0, 0, 0]
        a.bank = bank
        a.source = _NONES  # type: ignore[assignment]
        a.closed = False
        a.forward = _NONES  # type: ignore[assignment]
        return a

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.limit: list[int | None] = [None] * N_POOLED
        self.balance: list[int] = [0] * N_POOLED
        self.used: list[int] = [0] * N_POOLED
        # bank[i]: the account whose balance pays for resource i (None: unlimited)
        self.bank: list[Account | None] = [None] * N_POOLED
        # source[i]: the account this one's own balance was carved from
        self.source: list[Account | None] = [None] * N_POOLED
        self.closed = False
        self.forward: list[Account | None] = [None] * N_POOLED


class Accounts:
    """Opens, charges and closes accounts; keeps the totals the conservation test reads."""

    __slots__ = ("open_count",)

    def __init__(self) -> None:
        self.open_count = 0

    def open_root(self, pid: int, quota: Quota) -> Account:
        acct = Account(pid)
        units = quota.as_units()
        for i, name in enumerate(POOLED_RESOURCES):
            v = units[name]
            if v is not None:
                acct.limit[i] = int(v)
                acct.balance[i] = int(v)
                acct.bank[i] = acct
        self.open_count += 1
        return acct

    def open_child(self, pid: int, parent: Account, quota: Quota | None) -> Account:
        """Carve the child's limits out of the parent's banks, all or nothing."""
        if quota is None or quota == _NO_QUOTA:
            # the common case: no limits of its own, only the parent's children slot
            bank = parent.bank
            b = bank[CHILDREN]
            if b is not None:
                if b.balance[CHILDREN] < 1:
                    raise QuotaExceeded("children", "spawn needs 1 children but the parent has 0 left")
                b.balance[CHILDREN] -= 1
            self.open_count += 1
            return Account.thin(pid, bank)
        units = quota.as_units()
        want: list[int | None] = [None] * N_POOLED
        for i, name in enumerate(POOLED_RESOURCES):
            v = units.get(name)
            if v is not None:
                want[i] = int(v)
        # the spawn itself uses one `children` slot of the parent
        need = [0] * N_POOLED
        need[CHILDREN] = 1
        for i in range(N_POOLED):
            if want[i] is not None:
                need[i] += want[i] or 0
        short = self.shortfall(parent, need)
        if short is not None:
            name = POOLED_RESOURCES[short]
            short_bank = parent.bank[short]
            have = short_bank.balance[short] if short_bank is not None else 0
            raise QuotaExceeded(name, f"spawn needs {_fmt(short, need[short])} {name} "
                                      f"but the parent has {_fmt(short, have)} left")
        self._take(parent, need)
        acct = Account(pid)
        for i in range(N_POOLED):
            w = want[i]
            if w is None:
                acct.bank[i] = parent.bank[i]
            else:
                acct.limit[i] = w
                acct.balance[i] = w
                acct.bank[i] = acct
                acct.source[i] = parent.bank[i]
        self.open_count += 1
        return acct

    @staticmethod
    def shortfall(acct: Account, need: list[int]) -> int | None:
        """Index of the first resource `acct` cannot pay for, else None. No side effects."""
        bank = acct.bank
        for i in range(N_POOLED):
            n = need[i]
            if n:
                b = bank[i]
                if b is not None and b.balance[i] < n:
                    return i
        return None

    @staticmethod
    def _take(acct: Account, need: list[int]) -> None:
        bank = acct.bank
        for i in range(N_POOLED):
            n = need[i]
            if n:
                b = bank[i]
                if b is not None:
                    b.balance[i] -= n

    def charge(self, acct: Account, tokens: int, tool_calls: int, usd_nano: int) -> str | None:
        """Charge a driver cost atomically. Returns the exhausted resource's name, or None.
        An amount that is not a non-negative int is refused (`BadAmount`) before anything is
        taken: a charge can never credit an account or poison it with NaN."""
        if type(tokens) is not int or type(tool_calls) is not int or type(usd_nano) is not int \
                or tokens < 0 or tool_calls < 0 or usd_nano < 0:
            raise BadAmount(f"charge: amounts must be non-negative ints, got tokens={tokens!r} "
                            f"tool_calls={tool_calls!r} usd_nano={usd_nano!r}")
        bank = acct.bank
        if tokens:
            b = bank[TOKENS]
            if b is not None and b.balance[TOKENS] < tokens:
                return "tokens"
        if tool_calls:
            b = bank[TOOL_CALLS]
            if b is not None and b.balance[TOOL_CALLS] < tool_calls:
                return "tool_calls"
        if usd_nano:
            b = bank[USD]
            if b is not None and b.balance[USD] < usd_nano:
                return "usd"
        used = acct.used
        if tokens:
            used[TOKENS] += tokens
            b = bank[TOKENS]
            if b is not None:
                b.balance[TOKENS] -= tokens
        if tool_calls:
            used[TOOL_CALLS] += tool_calls
            b = bank[TOOL_CALLS]
            if b is not None:
                b.balance[TOOL_CALLS] -= tool_calls
        if usd_nano:
            used[USD] += usd_nano
            b = bank[USD]
            if b is not None:
                b.balance[USD] -= usd_nano
        return None

    # -- reserve → act → settle: device operations ------------------------------------------
    @staticmethod
    def _live_bank(acct: Account, i: int) -> "Account | None":
        """The account that pays for resource i now (a closed bank forwards to its source)."""
        b = acct.bank[i]
        while b is not None and b.closed:
            b = b.forward[i]
        return b

    def reserve(self, acct: Account, need: tuple[int, int, int]) -> str | None:
        """Set aside an operation's maximum cost (tokens, tool_calls, usd_nano) before it
        runs, atomically up the hierarchy. Returns the resource that does not fit (nothing
        was taken), else None. A reservation is neither balance nor used until `settle`."""
        _amounts("reserve", need)
        for i, n in zip((TOKENS, TOOL_CALLS, USD), need):
            if n:
                b = self._live_bank(acct, i)
                if b is not None and b.balance[i] < n:
                    return POOLED_RESOURCES[i]
        for i, n in zip((TOKENS, TOOL_CALLS, USD), need):
            if n:
                b = self._live_bank(acct, i)
                if b is not None:
                    b.balance[i] -= n
        return None

    def shortfall_of(self, acct: Account, need: tuple[int, int, int]) -> str | None:
        """The resource a reservation of `need` would not fit, else None. No side effects."""
        for i, n in zip((TOKENS, TOOL_CALLS, USD), need):
            if n:
                b = self._live_bank(acct, i)
                if b is not None and b.balance[i] < n:
                    return POOLED_RESOURCES[i]
        return None

    def settle(self, acct: Account, reserved: tuple[int, int, int],
               actual: tuple[int, int, int]) -> tuple[tuple[int, int, int], tuple[str, int] | None]:
        """Charge what the operation cost and release the rest of its reservation. A cost
        above the reservation is charged as far as the bank can pay (a child's budget
        bounds what its calls can take from the rest of the tree, whatever a driver
        reports). Returns what was charged (tokens, tool_calls, usd_nano): the one figure
        every view of the run reports; and the first resource that overran with the amount
        left unpaid (the caller is then killed), else None."""
        _amounts("settle: reserved", reserved)
        _amounts("settle: actual", actual)
        overrun: tuple[str, int] | None = None
        used = acct.used
        charged = [0, 0, 0]
        for k, (i, r, a) in enumerate(zip((TOKENS, TOOL_CALLS, USD), reserved, actual)):
            if not r and not a:
                continue
            b = self._live_bank(acct, i)
            if a <= r:
                if b is not None:
                    b.balance[i] += r - a
                used[i] += a
                charged[k] = a
                continue
            extra = a - r
            pay = extra if b is None else max(0, min(extra, b.balance[i]))
            if b is not None:
                b.balance[i] -= pay
            used[i] += r + pay
            charged[k] = r + pay
            if overrun is None:
                overrun = (POOLED_RESOURCES[i], extra - pay)
        return (charged[0], charged[1], charged[2]), overrun

    def mem_take(self, acct: Account, tokens: int) -> bool:
        if type(tokens) is not int or tokens < 0:
            raise BadAmount(f"mem: an amount must be a non-negative int, got {tokens!r}")
        b = acct.bank[MEM]
        if b is not None:
            if b.balance[MEM] < tokens:
                return False
            b.balance[MEM] -= tokens
        acct.used[MEM] += tokens
        return True

    def mem_give(self, acct: Account, tokens: int) -> None:
        if type(tokens) is not int or tokens < 0:
            raise BadAmount(f"mem: an amount must be a non-negative int, got {tokens!r}")
        b = acct.bank[MEM]
        while b is not None and b.closed:
            b = b.forward[MEM]
        if b is not None:
            b.balance[MEM] += tokens
        acct.used[MEM] -= tokens

    def close(self, acct: Account, parent: Account | None) -> None:
        """Return unused balances to where they came from; free the parent's children slot."""
        if acct.closed:
            return
        acct.closed = True
        for i in range(N_POOLED) if acct.source is not _NONES else ():
            if acct.bank[i] is acct:
                dest = acct.source[i]
                while dest is not None and dest.closed:
                    dest = dest.forward[i]
                acct.forward[i] = dest
                if dest is not None:
                    dest.balance[i] += acct.balance[i]
                acct.balance[i] = 0
        if parent is not None:
            b = parent.bank[CHILDREN]
            while b is not None and b.closed:
                b = b.forward[CHILDREN]
            if b is not None:
                b.balance[CHILDREN] += 1
        self.open_count -= 1

    @staticmethod
    def view(acct: Account) -> dict[str, Any]:
        """Limits, remaining and used in user units (usd in dollars)."""
        limits: dict[str, Any] = {}
        remaining: dict[str, Any] = {}
        used: dict[str, Any] = {}
        for i, name in enumerate(POOLED_RESOURCES):
            bank = acct.bank[i]
            lim: Any = acct.limit[i]
            rem: Any = bank.balance[i] if bank is not None else None
            u: Any = acct.used[i]
            if name == "usd":
                lim = None if lim is None else lim / USD_SCALE
                rem = None if rem is None else rem / USD_SCALE
                u = u / USD_SCALE
            limits[name] = lim
            remaining[name] = rem
            used[name] = u
        return {"limits": limits, "remaining": remaining, "used": used}


def _amounts(what: str, amounts: Any) -> None:
    """(tokens, tool_calls, usd_nano), each a non-negative int, or `BadAmount` before
    anything is taken: a reservation or settlement can never credit or poison a balance."""
    if type(amounts) is not tuple or len(amounts) != 3 \
            or any(type(v) is not int or v < 0 for v in amounts):
        raise BadAmount(f"{what}: amounts must be three non-negative ints, got {amounts!r:.120}")


def _fmt(i: int, v: int) -> str:
    return f"${v / USD_SCALE:.6f}" if i == USD else str(v)
