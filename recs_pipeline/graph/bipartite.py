"""Id maps and the user–item bipartite graph.

Users get indices 0..n_users-1 and items 0..n_items-1, each in the sort order of their external
id (stable for a given set of ids, reproducible across re-runs). In the joint node space of
:func:`normalized_adjacency`, item i is node ``n_users + i``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import duckdb
import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import svds

from recs_pipeline.infra.warehouse import replace_partition, transaction


@dataclasses.dataclass
class InteractionGraph:
    """The split of one as-of date in index space.

    ``train_users[e], train_items[e]`` is train edge e (sorted by user, then item) and
    ``train_last_ts[e]`` its latest event time in epoch microseconds and ``train_weight[e]``
    its weight (the sum of its events' weights; None in graphs stored before it was kept);
    ``test_*`` likewise for test edges, whose users and items all occur in train.
    """

    user_ids: list[str]
    item_ids: list[str]
    train_users: torch.Tensor
    train_items: torch.Tensor
    train_last_ts: torch.Tensor
    test_users: torch.Tensor
    test_items: torch.Tensor
    train_weight: torch.Tensor | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def train_csr(self) -> torch.Tensor:
        return interaction_csr(self.train_users, self.train_items, self.n_users, self.n_items)

    def test_csr(self) -> torch.Tensor:
        return interaction_csr(self.test_users, self.test_items, self.n_users, self.n_items)

    def item_degree(self) -> torch.Tensor:
        return torch.bincount(self.train_items, minlength=self.n_items)

    def up_to_date(self) -> InteractionGraph:
        """Everything known up to the as-of date: train ∪ test edges as the train edges (test
        fold empty), sorted by user then item. For publication, not evaluation: a user's
        interactions in the test period then shape that day's list. Test edges carry no event
        time here, so they get the newest train time."""
        train_keys = self.train_users * self.n_items + self.train_items
        test_keys = self.test_users * self.n_items + self.test_items
        new_keys = torch.unique(test_keys[~torch.isin(test_keys, train_keys)])
        newest = int(self.train_last_ts.max()) if self.train_last_ts.numel() else 0
        keys = torch.cat([train_keys, new_keys])
        last_ts = torch.cat([self.train_last_ts, torch.full_like(new_keys, newest)])
        order = torch.argsort(keys)
        keys, last_ts = keys[order], last_ts[order]
        empty = self.test_users[:0]
        return InteractionGraph(
            self.user_ids,
            self.item_ids,
            keys // self.n_items,
            keys % self.n_items,
            last_ts,
            empty,
            empty,
        )

    @classmethod
    def from_edges(
        cls,
        n_users: int,
        n_items: int,
        users: torch.Tensor,
        items: torch.Tensor,
        last_ts: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> InteractionGraph:
        """A graph of train edges given in index space (a benchmark's, a test's): ids "0",
        "1", ..., the edges in the order given (validation slices break ties in time by edge
        order), no test fold."""
        empty = torch.zeros(0, dtype=torch.long)
        return cls(
            [str(u) for u in range(n_users)],
            [str(i) for i in range(n_items)],
            users,
            items,
            last_ts,
            empty,
            empty,
            train_weight=weights,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, state: dict) -> InteractionGraph:
        return cls(**state)


def interaction_csr(
    users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int
) -> torch.Tensor:
    """The binary n_users × n_items interaction matrix R as a sparse CSR tensor."""
    values = torch.ones(users.numel(), dtype=torch.float32)
    coo = torch.sparse_coo_tensor(
        torch.stack([users, items]), values, (n_users, n_items), check_invariants=False
    )
    csr = coo.coalesce().to_sparse_csr()
    return torch.sparse_csr_tensor(
        csr.crow_indices(),
        csr.col_indices(),
        torch.ones_like(csr.values()),
        csr.shape,
        check_invariants=False,
    )


def csr_rows(matrix: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nonzeros of the given rows of a sparse CSR matrix as (position in ``rows``, column)."""
    indptr, indices = matrix.crow_indices(), matrix.col_indices()
    starts, counts = indptr[rows], indptr[rows + 1] - indptr[rows]
    row_of = torch.repeat_interleave(torch.arange(rows.numel()), counts)
    offsets = torch.arange(row_of.numel()) - torch.repeat_interleave(
        counts.cumsum(0) - counts, counts
    )
    return row_of, indices[starts[row_of] + offsets]


def bipartite_csr(
    users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int
) -> torch.Tensor:
    """The 0/1 adjacency [[0, R], [Rᵀ, 0]] over the joint node space as sparse CSR
    (duplicate edges count once)."""
    n = n_users + n_items
    key = torch.unique(users.long() * n_items + items.long())
    u, i = key // n_items, key % n_items
    rows, cols = torch.cat([u, i + n_users]), torch.cat([i + n_users, u])
    coo = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), torch.ones(rows.numel()), (n, n), check_invariants=False
    )
    return coo.coalesce().to_sparse_csr()


def normalized_adjacency(
    users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int
) -> torch.Tensor:
    """Â = D^{-1/2} A D^{-1/2} of the bipartite graph A = [[0, R], [Rᵀ, 0]] as sparse CSR.

    N = n_users + n_items nodes; D is the diagonal degree matrix; duplicate edges count once and
    isolated nodes have empty rows. Build it once and reuse it: every LightGCN layer is one
    sparse–dense product with this matrix.
    """
    n = n_users + n_items
    key = torch.unique(users.long() * n_items + items.long())
    u, i = key // n_items, key % n_items
    degree = torch.bincount(u, minlength=n_users).float()
    degree = torch.cat([degree, torch.bincount(i, minlength=n_items).float()])
    inv_sqrt = torch.where(degree > 0, degree.rsqrt(), torch.zeros_like(degree))
    rows = torch.cat([u, i + n_users])
    cols = torch.cat([i + n_users, u])
    values = inv_sqrt[rows] * inv_sqrt[cols]
    coo = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), values, (n, n), check_invariants=False
    ).coalesce()
    return coo.to_sparse_csr()


class _SymmetricSpMM(torch.autograd.Function):
    """y = A x for a symmetric sparse A, with the backward pass A·∂y instead of Aᵀ·∂y.

    torch's own backward of a sparse CSR product transposes A on every call, which on the
    Gowalla graph costs five times the product itself; for a symmetric A the transpose is A.
    """

    @staticmethod
    def forward(ctx, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return adjacency @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.adjacency @ grad


def propagate(adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Â x for the symmetric normalised adjacency of :func:`normalized_adjacency`."""
    return _SymmetricSpMM.apply(adjacency, x)


def normalized_interactions(
    users: torch.Tensor,
    items: torch.Tensor,
    n_users: int,
    n_items: int,
    user_exponent: float = 0.5,
) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """(R, R̃ = D_U^{-a} R D_I^{-1/2}, item degrees) as scipy CSR float32 (for SVDs and
    item–item filters), a = ``user_exponent`` (the symmetric ½ by default); duplicate edges count
    once, empty rows and columns stay zero."""
    ones = np.ones(users.numel(), dtype=np.float32)
    r = sp.csr_matrix((ones, (users.numpy(), items.numpy())), shape=(n_users, n_items))
    r.data[:] = 1.0
    d_u = np.asarray(r.sum(axis=1)).ravel()
    d_i = np.asarray(r.sum(axis=0)).ravel()
    # ½ as 1/√d, bit for bit the float32 rounding GF-CF's reproduced figures were measured with
    at_least_1 = np.maximum(d_u, 1)
    powered = 1.0 / np.sqrt(at_least_1) if user_exponent == 0.5 else at_least_1**-user_exponent
    inv_u = np.where(d_u > 0, powered, 0.0).astype(np.float32)
    inv_i = np.where(d_i > 0, 1.0 / np.sqrt(np.maximum(d_i, 1)), 0.0).astype(np.float32)
    r_norm = (sp.diags(inv_u) @ r @ sp.diags(inv_i)).tocsr().astype(np.float32)
    return r, r_norm, d_i


def truncated_svd(
    matrix: sp.spmatrix, k: int, seed: int, ncv: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top singular triplets ``(u, sigma, vt)`` of ``matrix``: ``k`` of them, at most
    ``min(shape) - 1`` (ARPACK's ``svds`` computes no more), by ``svds`` with ``ncv`` Lanczos
    vectors (None: scipy's default).

    A log of one user or one item has ``min(shape) == 1``, where ARPACK has no rank to offer
    (scipy: "`k` must be an integer satisfying `0 < k < min(A.shape)`"): its one triplet is then
    the dense SVD of the single row or column, which costs no more than reading it.

    The triplets are computed in float64 whatever ``matrix`` holds: on a float32 matrix ARPACK
    returned other singular vectors for the same input and seed now and then (a sparse train
    period with k close to its rank: many vanishing singular values), so one log profiled and
    fitted differently call after call (tests/test_gfcf.py). It costs about a fifth more time
    on Gowalla's 256-vector basis."""
    if min(matrix.shape) < 1:
        raise ValueError(
            f"an interaction matrix of {matrix.shape[0]} user(s) x {matrix.shape[1]} item(s) has"
            " no singular vectors: the log needs at least one user and one item"
        )
    k = min(k, min(matrix.shape) - 1)
    if k >= 1:
        return svds(matrix.astype(np.float64), k=k, ncv=ncv, random_state=seed)
    u, sigma, vt = np.linalg.svd(matrix.toarray(), full_matrices=False)
    return u, sigma, vt


def index_split(con: duckdb.DuckDBPyConnection, as_of: dt.date) -> InteractionGraph:
    """Build the id maps of ``as_of`` from its train split, store them in
    ``features.user_index`` / ``features.item_index`` (one transaction), and return the split in
    index space."""
    with transaction(con):
        for table, column, source in (
            ("features.user_index", "user_id", "user_id"),
            ("features.item_index", "item_id", "item_id"),
        ):
            replace_partition(
                con,
                table,
                as_of,
                f"""SELECT CAST(? AS DATE), {column},
                           (row_number() OVER (ORDER BY {column}) - 1)::INTEGER
                    FROM (SELECT DISTINCT {source} AS {column}
                          FROM features.train_interactions WHERE as_of_date = ?)""",
                [as_of, as_of],
            )

    def ids(table: str, column: str) -> list[str]:
        rows = con.execute(
            f"SELECT {column} FROM {table} WHERE as_of_date = ? ORDER BY idx", [as_of]
        ).fetchnumpy()[column]
        return [str(x) for x in rows]

    def edges(table: str, extra: str = "") -> dict[str, np.ndarray]:
        return con.execute(
            f"""SELECT u.idx AS u, i.idx AS i {extra}
                FROM {table} t
                JOIN features.user_index u ON u.as_of_date = t.as_of_date AND u.user_id = t.user_id
                JOIN features.item_index i ON i.as_of_date = t.as_of_date AND i.item_id = t.item_id
                WHERE t.as_of_date = ? ORDER BY u, i""",
            [as_of],
        ).fetchnumpy()

    train = edges("features.train_interactions", ", epoch_us(t.last_ts) AS ts, t.weight AS w")
    test = edges("features.test_interactions")

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(array, dtype=np.int64))

    return InteractionGraph(
        user_ids=ids("features.user_index", "user_id"),
        item_ids=ids("features.item_index", "item_id"),
        train_users=tensor(train["u"]),
        train_items=tensor(train["i"]),
        train_last_ts=tensor(train["ts"]),
        test_users=tensor(test["u"]),
        test_items=tensor(test["i"]),
        train_weight=torch.from_numpy(np.asarray(train["w"], dtype=np.float32)),
    )


def id_map_version(user_ids: list[str], item_ids: list[str]) -> str:
    """A short digest identifying an id map: equal digests mean identical index assignments."""
    digest = hashlib.sha256()
    for ids in (user_ids, item_ids):
        digest.update("\x1f".join(ids).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()[:16]
