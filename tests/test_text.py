import pytest

from triage.text import mask_personal, normalize, tokenize

AWKWARD = ["", "   ", "\u200b\u200b", "5555555", "ค่ะะะะะ", "ๆๆๆๆ", "ไฟดับ 😀😀 ok", "๑๒๓", "ก" * 20000, "a" * 20000]


@pytest.mark.parametrize("text", AWKWARD)
def test_normalize_is_idempotent_and_tokenize_terminates(text):
    once = normalize(text)
    assert normalize(once) == once
    assert isinstance(tokenize(once), list)


def test_repeats_digits_and_placeholders():
    assert normalize("ค่ะะะะ 55555 ๆๆๆ") == "ค่ะ 555 ๆ"
    assert normalize("เลข ๑๒๓") == "เลข 123"
    n = normalize("โทร 081-234-5678 บัตร 1-2345-67890-12-3 ดู https://x.co/a")
    assert "phonetoken" in n and "idtoken" in n and "urltoken" in n and "081" not in n


def test_mask_personal_hides_phone_and_id():
    m = mask_personal("โทร 0812345678 เลขบัตร 1234567890123 นายสมชาย")
    assert "0812345678" not in m and "1234567890123" not in m and "สมชาย" not in m


def test_tokenize_thai_words():
    assert tokenize(normalize("ไฟฟ้าดับทั้งซอย")) == ["ไฟฟ้า", "ดับ", "ทั้ง", "ซอย"]
