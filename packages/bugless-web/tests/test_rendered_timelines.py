"""The rendered-timeline cache: kept per key for its TTL, bounded, CSRF put in per reader."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bugless_web.rendered_timelines import RenderedTimelines, TimelineKey

KEY: TimelineKey = (7, 3, 3, "u1", False, "b1")


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


class Renderer:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, token: str) -> str:
        self.calls += 1
        return f'<form><input name="_csrf" value="{token}"></form>#{self.calls}'


def test_a_timeline_is_rendered_once_per_key_until_the_ttl_passes() -> None:
    clock, render = Clock(), Renderer()
    cache = RenderedTimelines(5.0, clock=clock)
    first = cache.get_or_render(KEY, "tokA", render)
    second = cache.get_or_render(KEY, "tokB", render)
    assert render.calls == 1
    # Each reader's own CSRF token, never the placeholder or another's.
    assert 'value="tokA"' in first
    assert 'value="tokB"' in second
    assert "tokA" not in second
    assert cache.placeholder not in first + second
    cache.get_or_render((*KEY[:1], 4, 4, *KEY[3:]), "tokA", render)  # a new version
    assert render.calls == 2
    clock.now += 5.1
    assert cache.get_or_render(KEY, "tokA", render).endswith("#3")


def test_a_zero_ttl_renders_every_time_with_the_real_token() -> None:
    render = Renderer()
    cache = RenderedTimelines(0.0)
    assert 'value="tok"' in cache.get_or_render(KEY, "tok", render)
    cache.get_or_render(KEY, "tok", render)
    assert render.calls == 2
    assert len(cache) == 0


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bugless_web.rendered_timelines.TIMELINE_CACHE_SIZE", 2)
    render = Renderer()
    cache = RenderedTimelines(60.0)
    for issue in (1, 2, 3):
        cache.get_or_render((issue, *KEY[1:]), "t", render)
    assert len(cache) == 2
    cache.get_or_render((3, *KEY[1:]), "t", render)
    assert render.calls == 3
    cache.get_or_render((1, *KEY[1:]), "t", render)  # the oldest, forgotten
    assert render.calls == 4


def test_the_cache_is_bounded_in_characters_and_keeps_the_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bugless_web.rendered_timelines.TIMELINE_CACHE_CHARS", 250)
    cache = RenderedTimelines(60.0)
    for issue in (1, 2, 3, 4):
        cache.get_or_render((issue, *KEY[1:]), "t", lambda _token: "x" * 100)
    assert len(cache) == 2
    assert cache.chars == 200
    render = Renderer()
    cache.get_or_render((4, *KEY[1:]), "t", render)  # the newest is kept
    assert render.calls == 0
    huge = cache.get_or_render((5, *KEY[1:]), "t", lambda _token: "y" * 1000)
    assert huge == "y" * 1000  # larger than the bound: served, kept alone
    assert len(cache) == 1
    assert cache.chars == 1000
