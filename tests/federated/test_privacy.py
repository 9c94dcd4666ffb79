"""The accountant against published figures, and the calibration / composition rules built on it."""

import math

import pytest

from forgeflow.tasks.federated.privacy import (
    ClientLevelAccountant, RecordLevelAccountant, calibrate_noise, classic_rdp_epsilon, subsampled_gaussian_epsilon,
)


# TF-Privacy's MNIST DP-SGD tutorial (tensorflow/privacy, tutorials/README.md): N = 60000, batch 256, delta 1e-5;
# "eps = 3.01" for noise 1.1 over 60 epochs, 1.19 for noise 1.3 over 15 epochs, 7.10 for noise 0.7 over 45 epochs
# (RDP moments accountant, classic RDP -> (eps, delta) conversion).
@pytest.mark.parametrize("noise,epochs,published", [(1.1, 60, 3.01), (1.3, 15, 1.19), (0.7, 45, 7.10)])
def test_rdp_accountant_matches_tf_privacy_published_epsilon(noise, epochs, published):
    q, steps = 256 / 60000, math.ceil(epochs * 60000 / 256)
    assert classic_rdp_epsilon(q, noise, steps, 1e-5) == pytest.approx(published, abs=0.006)
    # what we report uses the tighter conversion: never larger
    assert subsampled_gaussian_epsilon(q, noise, steps, 1e-5) <= published


def test_record_level_epsilon_is_worst_client_over_its_own_participation():
    acc = RecordLevelAccountant(client_sizes=(64, 256), batch_size=16, local_epochs=1, noise=1.0, delta=1e-5)
    only_small = acc.epsilon((3, 0))
    assert only_small == pytest.approx(subsampled_gaussian_epsilon(16 / 64, 1.0, 3 * 4, 1e-5))
    both = acc.epsilon((3, 3))
    assert both == max(only_small, subsampled_gaussian_epsilon(16 / 256, 1.0, 3 * 16, 1e-5))
    assert acc.epsilon((0, 0)) == 0.0
    assert acc.epsilon((4, 0)) > only_small  # composition grows with participation


def test_calibrated_noise_is_the_smallest_meeting_the_target():
    acc = lambda z: ClientLevelAccountant(0.1, z, 1e-5).epsilon(100)  # noqa: E731
    z = calibrate_noise(acc, 2.0)
    assert acc(z) <= 2.0 < acc(z * 0.99)
    with pytest.raises(ValueError):
        calibrate_noise(acc, 1e-6, high=5.0)


def test_record_noise_calibration_covers_every_client():
    from forgeflow.tasks.federated.privacy import calibrate_record_noise

    sizes = (12, 40, 200, 75)
    z = calibrate_record_noise(sizes, batch_size=16, local_epochs=1, rounds=10, delta=1e-5, target_epsilon=4.0)
    acc = RecordLevelAccountant(sizes, 16, 1, z, 1e-5)
    assert acc.worst_case_epsilon(10) <= 4.0 < RecordLevelAccountant(sizes, 16, 1, z * 0.99, 1e-5).worst_case_epsilon(10)


def test_full_batch_dp_gd_is_an_unamplified_gaussian_step_per_epoch_for_every_client():
    # batch >= n_k: sampling rate 1 and one step per local epoch, whatever the client's size
    acc = RecordLevelAccountant(client_sizes=(3, 70, 400), batch_size=4096, local_epochs=2, noise=4.0, delta=1e-5)
    per_client = [acc.client_epsilon(k, 10) for k in range(3)]
    assert per_client[0] == per_client[1] == per_client[2]
    assert per_client[0] == pytest.approx(subsampled_gaussian_epsilon(1.0, 4.0, 20, 1e-5))
    assert acc.worst_case_epsilon(10) == per_client[0]
    # R Gaussian releases of sensitivity 1 and noise z compose to a Gaussian of noise z / sqrt(R) (exact):
    # RDP of one Gaussian is alpha / (2 sigma^2), so the two accountings must agree
    assert subsampled_gaussian_epsilon(1.0, 4.0, 20, 1e-5) == pytest.approx(
        subsampled_gaussian_epsilon(1.0, 4.0 / math.sqrt(20), 1, 1e-5), rel=1e-9)
