"""Character n-gram counting with numpy: scikit-learn's ``CountVectorizer(analyzer="char")`` matrix to the bit,
~3x faster on 100,000 short queries (``tfidf_lr``'s fit; issue #17).

scikit-learn counts in a Python loop over every n-gram of every text. Here an n-gram's id is looked up from its
(n-1)-gram prefix's id and its last character, so every step is a numpy pass; the vocabulary's insertion order
and the sorting and pruning steps are scikit-learn's own, so the matrix (entries in the same storage order), the
terms and therefore any model fitted on them are identical (``tests/routers/test_sparse_text.py`` compares).

Example:
    >>> counts, terms = char_ngram_counts(["ab a", "ba"], (1, 2), min_df=1, max_features=100)
    >>> terms
    [' ', ' a', 'a', 'ab', 'b', 'b ', 'ba']
    >>> counts.toarray().astype(int).tolist()
    [[1, 1, 2, 1, 1, 1, 0], [0, 0, 1, 0, 1, 0, 1]]
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

#: scikit-learn's whitespace normalisation before character n-grams (runs of 2+ whitespace become one space).
_WHITE_SPACES = re.compile(r"\s\s+")
#: Largest dense (prefix term, character) table when numbering n-grams; beyond it ``np.unique`` sorts the pairs.
_TABLE = 1 << 24
#: Documents per block when the count matrix is assembled.
_DOCS = 8192


def char_ngram_counts(texts: list[str], ngrams: tuple[int, int], min_df: int, max_features: int) -> Any:
    """``(counts, terms)``: what scikit-learn's ``CountVectorizer(analyzer="char", ngram_range=ngrams,
    min_df=min_df, max_features=max_features, dtype=np.float64).fit_transform(texts)`` returns (the same
    matrix, its entries stored in the same order) and its terms in column order; ``None`` (use scikit-learn)
    for a text with a NUL character or 2**31 characters in all.

    scikit-learn counts in a Python loop over every n-gram of every text (~5 s for 100,000 short queries);
    here an n-gram's id is looked up from its (n-1)-gram prefix's id and its last character in a dense table,
    so every step is a numpy pass (~1.5 s), and the matrix is assembled over blocks of ``_DOCS`` documents
    (counts held as float32 until pruned: exact below 2**24 repeats of a term in one text). The vocabulary's
    insertion order (first seen document, n, position) and the sorting and pruning steps are scikit-learn's
    own, so the matrix equals it to the bit (``tests/routers/test_sparse_text.py``)."""
    import scipy.sparse as sp

    docs = [_WHITE_SPACES.sub(" ", t.lower()) for t in texts]
    lengths = np.fromiter(map(len, docs), np.int64, len(docs))
    codes = np.frombuffer("".join(docs).encode("utf-32-le"), np.uint32)
    if codes.size == 0:
        raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
    present = np.bincount(codes)
    alphabet = np.flatnonzero(present)
    if alphabet[0] == 0 or codes.size >= 2**31 - 8:  # NUL would not survive the string conversion below
        return None
    n_chars = alphabet.size
    chars = (np.cumsum(present > 0) - 1).astype(np.int32)[codes]  # each character's rank in code-point order
    del present
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    ends = np.repeat(bounds[1:], lengths)
    doc_of = np.repeat(np.arange(len(docs), dtype=np.int32), lengths)
    lo, hi = ngrams
    ids = chars  # per position: the id of the n-gram starting there (-1: none fits)
    digits = np.zeros((n_chars, hi), np.uint32)  # each term's characters, 0-padded
    digits[:, 0] = alphabet
    levels = []  # (ids per position, digits of the level's terms) for n = lo..hi
    valid = np.arange(codes.size, dtype=np.int32)  # positions where an n-gram of the current length fits
    for n in range(1, hi + 1):
        if n > 1:
            valid = valid[valid + n <= ends[valid]]
            pair = ids[valid].astype(np.int64) * n_chars + chars[valid + n - 1]
            if digits.shape[0] * n_chars <= _TABLE:
                seen = np.zeros(digits.shape[0] * n_chars, bool)
                seen[pair] = True
                uniq = np.flatnonzero(seen)
                new = (np.cumsum(seen, dtype=np.int32) - 1)[pair]
                del seen
            else:
                uniq, new = np.unique(pair, return_inverse=True)
            del pair
            digits = digits[uniq // n_chars]
            digits[:, n - 1] = alphabet[uniq % n_chars]
            ids = np.full(codes.size, -1, np.int32)
            ids[valid] = new
            del new
        if n >= lo:
            levels.append((ids, digits))
    del valid, ends
    # terms in scikit-learn's vocabulary insertion order: first seen (document, n, position)
    firsts = []
    for n, (at_ids, dig) in zip(range(lo, hi + 1), levels):
        at = np.flatnonzero(at_ids >= 0)
        first = np.full(dig.shape[0], codes.size, np.int64)
        np.minimum.at(first, at_ids[at], at)
        firsts.append(np.stack([doc_of[first], np.full(first.size, n), first]))
    first = np.concatenate(firsts, axis=1)
    n_terms = first.shape[1]
    if n_terms == 0:
        raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
    insertion = np.empty(n_terms, np.int64)
    insertion[np.lexsort(first[::-1])] = np.arange(n_terms)
    every = np.concatenate([d for _, d in levels])
    order = np.lexsort(every.T[::-1])  # lexicographic: a zero pads the shorter term, as strings compare
    rank = np.empty(n_terms, np.int64)
    rank[order] = np.arange(n_terms)
    starts = np.cumsum([0] + [d.shape[0] for _, d in levels])
    by_insertion = np.empty(n_terms, np.int32)
    by_insertion[insertion] = rank
    # Counts over blocks of documents (bounded temporaries): each row sorted by insertion id, as scikit-learn
    # sorts its raw matrix, then columns renamed to sorted order (its _sort_features), kept as float32 counts.
    blocks, dfs, tfs = [], np.zeros(n_terms, np.int64), np.zeros(n_terms)
    for d0 in range(0, len(docs), _DOCS):
        d1 = min(d0 + _DOCS, len(docs))
        a, b = bounds[d0], bounds[d1]
        rows, cols = [], []
        for (at_ids, _), s in zip(levels, starts):
            block = at_ids[a:b]
            keep = block >= 0
            rows.append(doc_of[a:b][keep] - d0)
            cols.append(insertion[block[keep].astype(np.int64) + s])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        part = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(d1 - d0, n_terms))
        del rows, cols
        part.sort_indices()
        part.indices = by_insertion.take(part.indices)
        dfs += np.bincount(part.indices, minlength=n_terms)
        tfs += np.bincount(part.indices, weights=part.data, minlength=n_terms)  # whole counts: exact sums
        blocks.append((part.indptr, part.indices, part.data))
    del levels, doc_of, chars, codes, ids
    # scikit-learn's _limit_features, then X[:, kept] written block by block into the final arrays
    mask = dfs >= min_df
    if mask.sum() > max_features:
        mask_inds = (-tfs[mask]).argsort()[:max_features]
        new_mask = np.zeros(n_terms, dtype=bool)
        new_mask[np.where(mask)[0][mask_inds]] = True
        mask = new_mask
    kept = np.where(mask)[0]
    if kept.size == 0:
        raise ValueError("After pruning, no terms remain. Try a lower min_df or a higher max_df.")
    nnz = int(dfs[mask].sum())
    index_dtype = np.int32 if nnz <= np.iinfo(np.int32).max else np.int64
    new_index = (np.cumsum(mask) - 1).astype(index_dtype)
    indptr, indices, data = np.zeros(len(docs) + 1, index_dtype), np.empty(nnz, index_dtype), np.empty(nnz)
    done, row = 0, 0
    while blocks:
        part_indptr, part_indices, part_data = blocks.pop(0)
        keep = mask[part_indices]
        upto = np.concatenate([[0], np.cumsum(keep)])
        indptr[row + 1 : row + part_indptr.size] = done + upto[part_indptr[1:]]
        size = int(upto[-1])
        indices[done : done + size] = new_index[part_indices[keep]]
        data[done : done + size] = part_data[keep]
        done, row = done + size, row + part_indptr.size - 1
    X = sp.csr_matrix((data, indices, indptr), shape=(len(docs), kept.size))
    text = np.ascontiguousarray(every[order][kept], dtype=np.uint32)
    return X, text.view(f"<U{hi}").ravel().tolist()


__all__ = ["char_ngram_counts"]
