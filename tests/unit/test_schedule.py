"""Timesteps and sigmas: the numbers of docs/METHOD.md, the default table, and validation of explicit lists."""

import warnings

import pytest

from invsr.errors import InvalidRequest
from invsr.schedule import DEFAULT_TIMESTEPS, parse_timesteps, resolve_timesteps, sigma_at, sigmas


@pytest.mark.parametrize("t, sigma", [(250, 0.6932), (200, 0.5693), (150, 0.4538), (100, 0.3417), (50, 0.2230)])
def test_sigma_is_looked_up_at_t_minus_one(t, sigma):
    assert sigma_at(t - 1) == pytest.approx(sigma, abs=5e-5)


def test_sigmas_match_diffusers_scaled_linear_schedule():
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    abar = scheduler.alphas_cumprod.double()
    for index in (0, 49, 199, 499, 999):
        assert sigma_at(index) == pytest.approx(
            ((1 - abar[index]) / abar[index]).sqrt().item(), rel=1e-4
        )  # diffusers works in float32


def test_a_final_zero_sigma_is_appended():
    values = sigmas((200, 100))
    assert values[-1] == 0.0 and len(values) == 3 and values[0] > values[1] > 0


def test_default_timestep_table():
    assert DEFAULT_TIMESTEPS == {
        1: (200,),
        2: (200, 100),
        3: (200, 100, 50),
        4: (200, 150, 100, 50),
        5: (250, 200, 150, 100, 50),
    }
    assert resolve_timesteps() == (200,)
    assert resolve_timesteps(4) == (200, 150, 100, 50)


def test_explicit_timesteps_are_used_as_given():
    assert resolve_timesteps(None, [150, 100, 50]) == (150, 100, 50)
    assert resolve_timesteps(2, (250, 10)) == (250, 10)


@pytest.mark.parametrize(
    "steps, timesteps, message",
    [
        (0, None, "steps must be an integer from 1 to 5"),
        (6, None, "steps must be an integer from 1 to 5"),
        (True, None, "steps must be an integer"),
        (None, [], "give 1 to 5 timesteps, got 0"),
        (None, [250, 200, 150, 100, 50, 25], "give 1 to 5 timesteps, got 6"),
        (None, [1001], "from 1 to 1000"),
        (None, [0], "from 1 to 1000"),
        (None, [200.5], "from 1 to 1000"),
        (None, [100, 200], "strictly descending"),
        (None, [200, 200], "strictly descending"),
        (3, [200, 100], "steps=3 disagrees with the 2 timesteps"),
    ],
)
def test_bad_schedules_are_refused_clearly(steps, timesteps, message):
    with pytest.raises(InvalidRequest, match=message):
        resolve_timesteps(steps, timesteps)


def test_untrained_start_timestep_warns_but_runs():
    with pytest.warns(UserWarning, match="start timestep 300 is not one the noise predictor was trained on"):
        assert resolve_timesteps(None, [300, 100]) == (300, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_timesteps(None, [250, 100])


def test_parse_timesteps():
    assert parse_timesteps("200,100") == (200, 100)
    assert parse_timesteps(" 250, 50 ") == (250, 50)
    with pytest.raises(InvalidRequest, match="comma-separated integers"):
        parse_timesteps("200;100")
