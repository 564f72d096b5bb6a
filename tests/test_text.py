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


# Real-looking variants seen in complaints: each secret must not survive masking.
MASK_CASES = [
    ("โทร 081-234-5678 ค่ะ", "081-234-5678"),
    ("ติดต่อ 0812345678", "0812345678"),
    ("เบอร์ 0 8 1 2 3 4 5 6 7 8 ครับ", "0 8 1 2 3 4 5 6 7 8"),
    ("เบอร์ 081–234–5678", "081–234–5678"),
    ("เบอร์ 081—234—5678", "081—234—5678"),
    ("โทร 02 123 4567", "02 123 4567"),
    ("โทร +66 81 234 5678", "81 234 5678"),
    ("โทร ๐๘๑๒๓๔๕๖๗๘", "0812345678"),
    ("โทร ศูนย์แปดหนึ่งสองสามสี่ห้าหกเจ็ดแปด", "ศูนย์แปดหนึ่งสองสาม"),
    ("โทร ศูนย์ แปด หนึ่ง สอง สาม สี่ ห้า หก เจ็ด แปด", "สอง สาม สี่ ห้า"),
    ("บัตร 1-2345-67890-12-3", "67890"),
    ("บัตร 1–2345–67890–12–3", "67890"),
    ("บัตร 1 2345 67890 12 3", "67890"),
    ("line id: somchai_1990", "somchai_1990"),
    ("Line ID somchai.1990 ทักมา", "somchai.1990"),
    ("ไลน์ @shopname", "shopname"),
    ("ไอดีไลน์ abc_def", "abc_def"),
    ("อีเมล somchai@example.com", "somchai@example.com"),
    ("นายสมชาย ใจดี แจ้ง", "สมชาย"),
    ("นาย สมชาย ใจดี แจ้ง", "ใจดี"),
    ("ด.ช.สมปอง ตกท่อ", "สมปอง"),
    ("ด.ญ. สมศรี ถูกสุนัขกัด", "สมศรี"),
    ("ดช.สมปอง ตกท่อ", "สมปอง"),
    ("เด็กหญิงมาลี หายไป", "มาลี"),
    ("คุณวิไล ร้องเรียน", "วิไล"),
    ("นส.มาลี แจ้งเหตุ", "มาลี"),
]


@pytest.mark.parametrize("text,secret", MASK_CASES)
def test_mask_personal_variants(text, secret):
    masked = mask_personal(text)
    assert secret not in masked, masked


@pytest.mark.parametrize(
    "text",
    ["ถนนเส้นนี้เป็นหลุมยาว 100 เมตร", "ซอย 5 บ้านเลขที่ 12/345", "ไฟดับ 3 ดวง ตั้งแต่ 2565", "นายกเทศมนตรี", "คุณภาพน้ำแย่", "ร้านส.หน้าวังค่ะ"],
)
def test_mask_personal_keeps_ordinary_text(text):
    assert mask_personal(text) == text


# normalize before its shortcuts (issue 9, fifth round), step for step: the reference the faster one must equal
def _reference_normalize(text: str) -> str:
    import unicodedata

    from pythainlp.util import reorder_vowels

    from triage import text as T

    norepeat, tones, dangling = T._thai_marks()
    text = unicodedata.normalize("NFC", text)
    text = T._ZERO_WIDTH.sub("", text)
    text = T._CONTROL.sub(" ", text)
    text = text.translate(T._THAI_DIGITS)
    text = T._LAUGH.sub("555", text)
    text = T._REPEAT.sub(r"\1", text)
    text = reorder_vowels(text)
    text = norepeat.sub(r"\1", text)
    text = tones.sub(lambda m: m.group(0)[-1], text)
    text = dangling.sub(lambda m: " " if m.group(0).startswith(" ") else "", text)
    text = T._URL.sub(" urltoken ", text)
    text = T._EMAIL.sub(" emailtoken ", text)
    text = T._NATIONAL_ID.sub(" idtoken ", text)
    text = T._PHONE.sub(" phonetoken ", text)
    return T._SPACES.sub(" ", text).strip().lower()


NORMALISATION_CASES = AWKWARD + ["๕๕๕๕๕ ค่ะะะะ", "a@b.co x@y", "๐๘๑-๒๓๔-๕๖๗๘", "๑-๒๓๔๕-๖๗๘๙๐-๑๒-๓", "1-2345-67890-12-3",
                                 "เเก", "ก่ำ", "ํ่า", "นํ้า", "กๅ", "ฤๅษี", "ก้ิ", "กา่", "WWW.X.COM hTTp://A", "٣٤٥ ０８１２３４５６７８",
                                 "โทร 0 8 1 2 3 4 5 6 7 8", "x\x00\x07y\u200b", "ก ุ่ม", "5555 55555"]


def test_the_faster_normalisation_is_the_reference_one_on_real_complaints(traffy_slice):
    import pandas as pd

    from triage import text as T

    texts = []
    for path in sorted((traffy_slice / "traffy").glob("*.parquet")):
        texts += pd.read_parquet(path, columns=["comment"])["comment"].dropna().tolist()
    assert len(texts) > 3000
    for text in texts + NORMALISATION_CASES:
        assert T.normalize.__wrapped__(text) == _reference_normalize(text), text[:80]


@pytest.mark.unit
def test_reorder_vowels_is_pythainlps():
    from pythainlp.util import reorder_vowels as theirs

    from triage.text import reorder_vowels

    for text in NORMALISATION_CASES + ["ไม้ยมก ้ั ่ิ ๊ี ๋ึ ์ื ุ่ ู้ ะ่ า้ ำ๊ ๅ๋"]:
        assert reorder_vowels(text) == theirs(text)
