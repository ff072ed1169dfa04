"""Which voice and speed read a story: a group story's own first, else the narrator's."""

from __future__ import annotations

import pytest

from core.narration import narration_voice, with_story_voice


def test_a_group_storys_voice_and_speed_come_first_each_on_its_own() -> None:
    own = {"tts_voice": "am_adam", "tts_speed": 1.5, "votes": {"seconds": 60}}
    assert narration_voice("group", own, "af_sky", 0.75) == ("am_adam", 1.5)
    assert narration_voice("group", {"tts_voice": "am_adam"}, "af_sky", 0.75) == ("am_adam", 0.75)
    assert narration_voice("group", {"tts_speed": 1.25}, "af_sky", 0.75) == ("af_sky", 1.25)
    assert narration_voice("group", {}, None, 1.0) == (None, 1.0)  # Kokoro's default voice
    assert narration_voice("group", None, "af_sky", 1.0) == ("af_sky", 1.0)


def test_a_solo_story_is_read_with_the_narrators_voice_whatever_its_settings_say() -> None:
    assert narration_voice("solo", {"tts_voice": "am_adam", "tts_speed": 1.5}, "af_sky", 0.75) == ("af_sky", 0.75)


def test_story_voice_changes_copy_the_settings_and_none_removes_a_key() -> None:
    settings = {"votes": {"seconds": 30}, "tts_voice": "am_adam"}
    changed = with_story_voice(settings, tts_speed=1.5)
    assert changed == {"votes": {"seconds": 30}, "tts_voice": "am_adam", "tts_speed": 1.5}
    assert settings == {"votes": {"seconds": 30}, "tts_voice": "am_adam"}  # a copy: SQLAlchemy sees the change
    assert with_story_voice(changed, tts_voice=None, tts_speed=None) == {"votes": {"seconds": 30}}
    assert with_story_voice(None, tts_voice="af_sky") == {"tts_voice": "af_sky"}
    with pytest.raises(ValueError):
        with_story_voice(settings, votes=None)
