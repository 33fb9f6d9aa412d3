import numpy as np
import torch

from manifold_mixup.common.data import make_split
from manifold_mixup.common.sampler import BatchStream, PairedBatches


def test_every_index_appears_once_per_pass_and_batches_straddle_passes():
    indices = np.arange(10, 33)  # 23 indices, batch 5: passes do not align with batches
    stream = BatchStream(indices, 5, seed=0)
    drawn = torch.cat([stream.batch(s) for s in range(23)])  # 115 = 5 passes
    for k in range(5):
        assert sorted(drawn[23 * k : 23 * (k + 1)].tolist()) == indices.tolist()
    assert not torch.equal(drawn[:23], drawn[23:46])  # reshuffled each pass


def test_batches_are_stateless_in_the_step_and_deterministic_in_the_seed():
    indices = np.arange(100)
    a, b = BatchStream(indices, 7, seed=3), BatchStream(indices, 7, seed=3)
    first = [a.batch(s) for s in range(40)]
    assert all(torch.equal(b.batch(s), first[s]) for s in reversed(range(40)))  # any order, fresh object
    assert not torch.equal(BatchStream(indices, 7, seed=4).batch(0), first[0])
    assert not torch.equal(BatchStream(indices, 7, seed=3, stream=1).batch(0), first[0])


def test_paired_batches_epoch_is_a_pass_over_the_unlabelled_set():
    labels = np.arange(1000) % 10
    split = make_split(labels, 20, 100, seed=0, num_classes=10)
    batches = PairedBatches(split, batch_size=8, unlabelled_batch_size=30, seed=0)
    assert batches.iterations_per_epoch == 900 // 30
    assert PairedBatches(split, 8, 30, 0, iterations_per_epoch=7).iterations_per_epoch == 7
    l, u = batches.indices(0)
    assert len(l) == 8 and len(u) == 30
    assert np.isin(l.numpy(), split.labelled).all() and np.isin(u.numpy(), split.unlabelled).all()
    # The 20 labelled images are reshuffled each time they run out: 5 updates of 8 = 2 passes.
    drawn = torch.cat([batches.indices(s)[0] for s in range(5)])
    assert sorted(drawn[:20].tolist()) == sorted(drawn[20:40].tolist()) == sorted(split.labelled.tolist())
    assert not torch.equal(drawn[:20], drawn[20:40])


def test_supervised_draws_no_unlabelled_indices():
    split = make_split(np.arange(200) % 10, 20, 20, seed=0, num_classes=10)
    l, u = PairedBatches(split, 10, 0, seed=0).indices(5)
    assert len(l) == 10 and len(u) == 0
