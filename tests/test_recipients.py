"""Recipient lists as authority contacts really export them from Excel, read from real files.

Each messy case has its own small file under tests/fixtures/lists/ (the byte-exact ones are written
by make_byte_fixtures.py there). Every test checks both sides: the row numbers problems point at,
and that every valid row still came through.
"""

from __future__ import annotations

import codecs
import tracemalloc
from pathlib import Path

import pytest

from newsletter.recipients import (
    Authority,
    ListSummary,
    Recipient,
    RowProblem,
    gather,
    load_authorities,
    read_list,
)

ROOT = Path(__file__).resolve().parents[1]
LISTS = Path(__file__).resolve().parent / "fixtures" / "lists"
CROSS = LISTS / "cross"
SAMPLES = ROOT / "recipients"


def read(name: str) -> tuple[list[Recipient], list[RowProblem]]:
    recipients: list[Recipient] = []
    problems: list[RowProblem] = []
    for item in read_list(LISTS / name, "alpha"):
        if isinstance(item, RowProblem):
            problems.append(item)
        else:
            recipients.append(item)
    return recipients, problems


def emails(recipients: list[Recipient]) -> list[str]:
    return [recipient.email for recipient in recipients]


def names(recipients: list[Recipient]) -> list[str]:
    return [recipient.name for recipient in recipients]


def where(problems: list[RowProblem]) -> list[tuple[int, str]]:
    return [(problem.row, problem.severity) for problem in problems]


def authority(slug: str) -> Authority:
    return Authority(slug=slug, name=f"{slug.title()} Council", kind="council")


# --- encodings and line endings -------------------------------------------------------------


def test_utf8_with_bom_and_crlf_as_excel_saves_csv_utf8() -> None:
    assert (LISTS / "bom.csv").read_bytes().startswith(codecs.BOM_UTF8)
    assert b"\r\n" in (LISTS / "bom.csv").read_bytes()
    recipients, problems = read("bom.csv")
    assert problems == []
    assert emails(recipients) == ["sian.jones@alpha.example.org", "zoe.brown@alpha.example.org"]
    assert names(recipients) == ["Siân Jones", "Zoë Brown"]
    assert recipients[0].fields == {"role": "Social Worker"}  # the BOM is not glued to the first heading


def test_crlf_without_bom() -> None:
    assert b"\r\n" in (LISTS / "crlf.csv").read_bytes()
    recipients, problems = read("crlf.csv")
    assert problems == []
    assert emails(recipients) == ["amy.lowe@alpha.example.org", "ben.hart@alpha.example.org"]
    assert recipients[1].fields == {"role": "Team Manager"}  # no stray "\r" on the last cell


def test_bare_cr_line_endings_from_old_mac_excel() -> None:
    assert b"\n" not in (LISTS / "cr_only.csv").read_bytes()
    recipients, problems = read("cr_only.csv")
    assert problems == []
    assert names(recipients) == ["Amy Lowe", "Ben Hart"]


def test_windows_1252_file_is_converted_with_a_warning_at_row_1() -> None:
    data = (LISTS / "cp1252.csv").read_bytes()
    assert b"Zo\xeb" in data and b"O\x92Brien" in data  # really cp1252 bytes, not UTF-8
    recipients, problems = read("cp1252.csv")
    assert where(problems) == [(1, "warning")]
    assert "Windows-1252" in problems[0].message and "CSV UTF-8" in problems[0].message
    assert str(problems[0]).startswith(f"{LISTS / 'cp1252.csv'}:1: warning: ")
    assert names(recipients) == ["Zoë Brown", "Siân Jones", "Renée O\u2019Brien"]
    assert len(recipients) == 3


def test_utf8_list_with_one_windows_1252_row_keeps_both_right() -> None:
    recipients, problems = read("mixed_encoding.csv")
    assert where(problems) == [(1, "warning")]
    assert "first at row 4" in problems[0].message
    assert names(recipients) == ["Siân Jones", "Chloé Martin", "Zoë Brown"]


def test_utf16_unicode_text_export_with_tabs() -> None:
    assert (LISTS / "utf16.csv").read_bytes()[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    recipients, problems = read("utf16.csv")
    assert problems == []
    assert names(recipients) == ["Zoë Brown", "Amy Lowe"]
    assert recipients[0].fields == {"role": "Team Manager"}


def test_accents_in_utf8() -> None:
    recipients, problems = read("accents.csv")
    assert problems == []
    assert names(recipients) == [
        "Siân Jones",
        "Zoë Brown",
        "Chloé Martin",
        "Ciarán Ó Súilleabháin",
        "Łukasz Wiśniewski",
    ]
    assert len(emails(recipients)) == 5


# --- values -----------------------------------------------------------------------------------


def test_stray_spaces_around_headings_and_values() -> None:
    recipients, problems = read("stray_spaces.csv")
    assert problems == []
    assert emails(recipients) == [
        "amy.lowe@alpha.example.org",
        "ben.hart@alpha.example.org",
        "cara.dunn@alpha.example.org",
    ]
    assert names(recipients) == ["Amy Lowe", "Ben Hart", "Cara Dunn"]
    assert [r.fields["role"] for r in recipients] == ["Social Worker", "Team Manager", "Practice Lead"]


def test_mixed_case_addresses_are_lower_cased() -> None:
    recipients, problems = read("mixed_case.csv")
    assert problems == []
    assert emails(recipients) == ["amy.lowe@alpha.example.org", "ben.hart@alpha.example.org"]


def test_quoted_names_with_commas() -> None:
    recipients, problems = read("quoted_commas.csv")
    assert problems == []
    assert names(recipients) == ["Lowe, Amy", "Hart, Ben", 'Dunn, Cara "CJ"']
    assert recipients[0].fields == {"role": "Manager, Fostering"}
    assert len(recipients) == 3


def test_line_breaks_inside_a_quoted_name_never_get_through() -> None:
    data = (LISTS / "crlf_in_name.csv").read_bytes()
    assert '"Siân\r\nJones"'.encode() in data
    recipients, problems = read("crlf_in_name.csv")
    assert where(problems) == [(3, "warning"), (4, "warning")]
    assert names(recipients) == ["Amy Lowe", "Siân Jones", "Jo Bloggs Bcc: someone@elsewhere.example.com", "Ben Hart"]
    assert all("\r" not in r.name and "\n" not in r.name for r in recipients)
    assert emails(recipients)[-1] == "ben.hart@alpha.example.org"  # the row after still counts from 5


def test_unquoted_comma_in_a_name_keeps_the_person_and_warns() -> None:
    recipients, problems = read("extra_cells.csv")
    assert where(problems) == [(2, "warning")]
    assert "column D" in problems[0].message and "Social Worker" in problems[0].message
    assert emails(recipients) == ["amy.lowe@alpha.example.org", "ben.hart@alpha.example.org"]


def test_invalid_addresses_are_errors_at_their_rows_and_the_rest_come_through() -> None:
    recipients, problems = read("invalid.csv")
    assert where(problems) == [(3, "error"), (5, "error"), (6, "error"), (7, "error"), (8, "error")]
    assert emails(recipients) == [
        "amy.lowe@alpha.example.org",
        "ben.hart@alpha.example.org",
        "gus.hale@alpha.example.org",
    ]
    by_row = {problem.row: problem.message for problem in problems}
    assert by_row[3].startswith("`jo.bloggs@` is not a valid email address (")
    assert by_row[3].endswith(": correct it in the spreadsheet and export again")
    assert "without a name" in by_row[5]
    assert "no email address" in by_row[6] and "Dan Price" in by_row[6]
    assert "mailto:" in by_row[8]
    assert str(problems[0]) == f"{LISTS / 'invalid.csv'}:3: error: {by_row[3]}"


def test_unclosed_quote_is_an_error_not_silence() -> None:
    recipients, problems = read("unclosed_quote.csv")
    assert where(problems) == [(3, "error")]
    assert "never closed" in problems[0].message and "2 line(s)" in problems[0].message
    assert emails(recipients) == ["amy.lowe@alpha.example.org"]


# --- rows and headings ------------------------------------------------------------------------


def test_blank_lines_are_skipped_silently_and_rows_keep_excel_numbers() -> None:
    recipients, problems = read("blank_lines.csv")
    assert where(problems) == [(8, "error")]  # blank row 1, heading row 2, blanks at 4, 5 and 7
    assert emails(recipients) == [
        "amy.lowe@alpha.example.org",
        "ben.hart@alpha.example.org",
        "cara.dunn@alpha.example.org",
    ]


def test_repeated_heading_row_is_a_note() -> None:
    recipients, problems = read("repeated_header.csv")
    assert where(problems) == [(3, "note")]
    assert emails(recipients) == ["amy.lowe@alpha.example.org", "ben.hart@alpha.example.org"]


def test_missing_email_column_is_one_error_and_no_recipients() -> None:
    recipients, problems = read("no_email_column.csv")
    assert recipients == []
    assert where(problems) == [(1, "error")]
    assert "`Mail`" in problems[0].message and "2 rows" in problems[0].message


def test_missing_heading_row_says_so() -> None:
    recipients, problems = read("headerless.csv")
    assert recipients == []
    assert where(problems) == [(1, "error")]
    assert "looks like a person" in problems[0].message


def test_missing_name_column_warns_and_keeps_everyone() -> None:
    recipients, problems = read("no_name_column.csv")
    assert where(problems) == [(1, "warning")]
    assert emails(recipients) == ["amy.lowe@alpha.example.org", "ben.hart@alpha.example.org"]
    assert names(recipients) == ["", ""]


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("header_email_address.csv", {"job title": "Social Worker"}),
        ("header_e_mail.csv", {"team": "Fostering"}),
    ],
)
def test_heading_variants(name: str, fields: dict[str, str]) -> None:
    recipients, problems = read(name)
    assert problems == []
    assert emails(recipients) == ["amy.lowe@alpha.example.org", "ben.hart@alpha.example.org"]
    assert names(recipients) == ["Amy Lowe", "Ben Hart"]
    assert recipients[0].fields == fields


def test_first_name_and_surname_columns_make_the_name() -> None:
    recipients, problems = read("header_first_last.csv")
    assert problems == []
    assert emails(recipients) == ["amy.lowe@alpha.example.org", "sian.jones@alpha.example.org"]
    assert names(recipients) == ["Amy Lowe", "Siân Jones"]
    assert recipients[1].fields == {"first name": "Siân", "surname": "Jones"}


def test_semicolon_delimited_export() -> None:
    recipients, problems = read("semicolons.csv")
    assert problems == []
    assert emails(recipients) == [
        "amy.lowe@alpha.example.org",
        "ben.hart@alpha.example.org",
        "cara.dunn@alpha.example.org",
    ]
    assert names(recipients) == ["Lowe, Amy", "Hart; Ben", "Cara Dunn"]
    assert recipients[2].fields == {"role": "Practice Lead, Fostering"}


def test_excel_sep_line_is_not_counted_as_a_row() -> None:
    recipients, problems = read("sep_line.csv")
    assert where(problems) == [(3, "error")]
    assert emails(recipients) == ["amy.lowe@alpha.example.org", "ben.hart@alpha.example.org"]


@pytest.mark.parametrize(("name", "row", "words"), [("workbook.csv", 0, "Excel workbook"), ("empty.csv", 1, "empty")])
def test_files_that_are_not_lists(name: str, row: int, words: str) -> None:
    recipients, problems = read(name)
    assert recipients == []
    assert where(problems) == [(row, "error")]
    assert words in problems[0].message


def test_missing_file_from_read_list_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    problems = list(read_list(tmp_path / "nowhere.csv", "alpha"))
    assert len(problems) == 1 and isinstance(problems[0], RowProblem)
    assert problems[0].row == 0 and problems[0].severity == "error"
    assert str(problems[0]).startswith(f"{tmp_path / 'nowhere.csv'}: error: ")


# --- duplicates, suppression, only --------------------------------------------------------------


def test_duplicates_within_a_list() -> None:
    recipients, problems = read("duplicates.csv")
    assert len(recipients) == 5 and problems == []  # read_list leaves deciding to gather

    summaries: dict[str, ListSummary] = {}
    kept = list(
        gather(LISTS, [Authority(slug="duplicates", name="Duplicates Council", kind="council")], summaries=summaries)
    )
    assert emails(kept) == ["amy.lowe@alpha.example.org", "ben.hart@alpha.example.org", "cara.dunn@alpha.example.org"]
    assert kept[0].name == "Amy Lowe"  # the first row wins
    summary = summaries["duplicates"]
    assert (summary.valid, summary.invalid, summary.duplicates, summary.suppressed) == (3, 0, 2, 0)
    assert where(summary.problems) == [(4, "note"), (6, "note")]
    assert "row 2" in summary.problems[0].message and "row 3" in summary.problems[1].message


def test_duplicate_across_lists_goes_to_the_first_authority() -> None:
    summaries: dict[str, ListSummary] = {}
    kept = list(gather(CROSS, [authority("alpha"), authority("beta")], summaries=summaries))
    assert [(r.email, r.authority) for r in kept] == [
        ("amy.lowe@alpha.example.org", "alpha"),
        ("ben.hart@alpha.example.org", "alpha"),
        ("cara.dunn@beta.example.org", "beta"),
        ("dan.price@beta.example.org", "beta"),
    ]
    beta = summaries["beta"]
    assert (beta.valid, beta.duplicates) == (2, 1)
    assert where(beta.problems) == [(3, "note")]
    assert "Alpha Council" in beta.problems[0].message and "keeps it" in beta.problems[0].message
    assert summaries["alpha"].problems == []

    reversed_order = list(gather(CROSS, [authority("beta"), authority("alpha")]))
    assert next(r for r in reversed_order if r.email == "ben.hart@alpha.example.org").authority == "beta"


def test_suppressed_addresses_are_skipped_and_counted_case_insensitively() -> None:
    summaries: dict[str, ListSummary] = {}
    kept = list(
        gather(
            CROSS,
            [authority("alpha"), authority("beta")],
            suppressed={"AMY.LOWE@alpha.example.org", " Ben.Hart@alpha.example.org "},
            summaries=summaries,
        )
    )
    assert emails(kept) == ["cara.dunn@beta.example.org", "dan.price@beta.example.org"]
    assert (summaries["alpha"].valid, summaries["alpha"].suppressed) == (0, 2)
    assert (summaries["beta"].valid, summaries["beta"].suppressed, summaries["beta"].duplicates) == (2, 1, 0)


def test_only_limits_the_authorities_and_their_summaries() -> None:
    summaries: dict[str, ListSummary] = {}
    kept = list(gather(CROSS, [authority("alpha"), authority("beta")], only=["beta"], summaries=summaries))
    assert [(r.email, r.authority) for r in kept] == [
        ("cara.dunn@beta.example.org", "beta"),
        ("ben.hart@alpha.example.org", "beta"),  # alpha is not being sent to, so beta keeps Ben
        ("dan.price@beta.example.org", "beta"),
    ]
    assert list(summaries) == ["beta"]
    assert summaries["beta"].problems == []


def test_only_with_an_unknown_slug_fails_at_once() -> None:
    with pytest.raises(ValueError, match="`gamma`"):
        gather(CROSS, [authority("alpha"), authority("beta")], only=["gamma"])


def test_missing_list_is_an_error_in_that_authoritys_summary() -> None:
    summaries: dict[str, ListSummary] = {}
    kept = list(gather(CROSS, [authority("alpha"), authority("gamma"), authority("beta")], summaries=summaries))
    assert len(kept) == 4
    gamma = summaries["gamma"]
    assert gamma.valid == 0 and where(gamma.problems) == [(0, "error")]
    assert "Gamma Council" in gamma.problems[0].message and "gamma.csv" in gamma.problems[0].message


def test_summaries_count_every_data_row_once() -> None:
    summaries: dict[str, ListSummary] = {}
    kept = list(gather(LISTS, [Authority(slug="invalid", name="Invalid Council", kind="council")], summaries=summaries))
    summary = summaries["invalid"]
    assert (summary.valid, summary.invalid, summary.duplicates, summary.suppressed) == (3, 5, 0, 0)
    assert len(kept) == 3


# --- the sample lists in recipients/ ------------------------------------------------------------


def test_sample_lists_all_load_cleanly() -> None:
    authorities = load_authorities(SAMPLES / "authorities.yaml")
    assert len(authorities) == 16
    summaries: dict[str, ListSummary] = {}
    kept = list(gather(SAMPLES, authorities, summaries=summaries))
    assert list(summaries) == [a.slug for a in authorities]
    for slug, summary in summaries.items():
        assert [p for p in summary.problems if p.severity != "note"] == [], slug
        assert summary.invalid == 0, slug
        assert 3 <= summary.valid + summary.duplicates <= 6, slug
    for recipient in kept:
        assert recipient.email.isascii() and recipient.email.endswith(".example.org")
        assert recipient.name and set(recipient.fields) == {"role"} and recipient.fields["role"]
    assert len({r.email for r in kept}) == len(kept)
    sample_names = {r.name for r in kept}
    assert {"Siân Pritchard", "Zoë Lambert", "Hollis, Karen"} <= sample_names
    assert any("Chloé" in name for name in sample_names)


def test_sample_cross_list_duplicate_is_sent_once_from_birmingham() -> None:
    authorities = load_authorities(SAMPLES / "authorities.yaml")
    summaries: dict[str, ListSummary] = {}
    kept = list(gather(SAMPLES, authorities, summaries=summaries))
    shared = [r for r in kept if r.email == "priya.sharma@birmingham.example.org"]
    assert [r.authority for r in shared] == ["birmingham"]
    notes = [p for s in summaries.values() for p in s.problems]
    assert len(notes) == 1 and notes[0].severity == "note"
    assert notes[0].file.name == "birmingham-childrens-trust.csv"
    assert "Birmingham City Council" in notes[0].message
    assert summaries["birmingham-childrens-trust"].duplicates == 1


# --- size ---------------------------------------------------------------------------------------


def write_big_list(path: Path, rows: int) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,name,role\r\n")
        for number in range(rows):
            out.write(f"person{number:06d}@big.example.org,Person {number},Social Worker\r\n")
    return path


def test_a_100000_row_list_yields_everyone(tmp_path: Path) -> None:
    path = write_big_list(tmp_path / "big.csv", 100_000)
    count = 0
    last = None
    for item in read_list(path, "big"):
        assert isinstance(item, Recipient)
        count += 1
        last = item
    assert count == 100_000
    assert last is not None and last.email == "person099999@big.example.org"


def test_reading_a_list_takes_flat_memory(tmp_path: Path) -> None:
    # tracemalloc slows reading tenfold, so this uses a smaller file than the test above; the limit
    # is below the file's own size, so holding its text or its rows in memory would fail it.
    path = write_big_list(tmp_path / "big.csv", 10_000)
    assert path.stat().st_size > 500_000
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_list(path, "big"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 10_000
    assert peak < 500_000


ODD_ADDRESSES = [
    "plain@walsall.example.org",
    "Mixed.Case@Dudley.Example.ORG",
    "a+tag@x.example.org",
    "o_neil@x.example.org",
    ".lead@x.example.org",
    "trail.@x.example.org",
    "two..dots@x.example.org",
    "no-at.example.org",
    "a@-bad.example.org",
    "a@bad-.example.org",
    "a@x.example.123",
    "a@localhost",
    "a@x.test",
    "a@x.invalid",
    "a@x.local",
    "a@onion",
    "a@x.example.o",
    "a@" + "l" * 64 + ".example.org",
    "a@" + "l" * 63 + ".example.org",
    "l" * 64 + "@x.example.org",
    "l" * 65 + "@x.example.org",
    "x@" + ".".join(["abcdefghi"] * 26) + ".org",
    "o'neil@x.example.org",
    "a@x_y.example.org",
    "a@x.example.org.",
    "sian@x.example.org ",
    "a@@x.example.org",
]


@pytest.mark.parametrize("raw", ODD_ADDRESSES)
def test_the_fast_address_check_agrees_with_email_validator(raw: str) -> None:
    """`address` checks the everyday shape by pattern: it must never accept what email-validator refuses."""
    from email_validator import EmailNotValidError, validate_email

    from newsletter.recipients import address

    try:
        expected = validate_email(raw, check_deliverability=False, allow_smtputf8=False).normalized.lower()
    except EmailNotValidError:
        expected = None
    try:
        got = address(raw)
    except EmailNotValidError:
        got = None
    assert got == expected


IDN_ADDRESSES = [
    "user@bücher.example.org",
    "User@Bücher.Example.ORG",
    "a@xn--bcher-kva.example.org",
    "a@ドメイン.example.org",
    "zoë@x.example.org",
    "a@bücher..example.org",
    "a@xn--zz.example.org",
]


@pytest.mark.parametrize("raw", ODD_ADDRESSES + IDN_ADDRESSES)
def test_addresses_are_ascii_for_the_envelope_and_the_ledger(raw: str) -> None:
    """Internationalised domains become A-labels (what SMTP without SMTPUTF8 carries); the rest as email-validator
    says."""
    from email_validator import EmailNotValidError, validate_email

    from newsletter.recipients import address

    try:
        expected = validate_email(raw, check_deliverability=False, allow_smtputf8=False).ascii_email.lower()
    except EmailNotValidError:
        expected = None
    try:
        got = address(raw)
    except EmailNotValidError:
        got = None
    assert got == expected
    assert got is None or got.isascii()


# --- one address for the CLI (`suppress add`) ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Jo.Bloggs@Walsall.example.org", "jo.bloggs@walsall.example.org"),
        ("  jo.bloggs@walsall.example.org ", "jo.bloggs@walsall.example.org"),
        ("user@bücher.example.org", "user@xn--bcher-kva.example.org"),
    ],
)
def test_valid_address_gives_the_ascii_dedupe_key(raw: str, expected: str) -> None:
    from newsletter.recipients import valid_address

    assert valid_address(raw) == expected


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("not an email", "not an email"),
        ("", "no address"),
        ("jo.bloggs@", "jo.bloggs@"),
        ("Jo Bloggs <jo@walsall.example.org>", "without a name"),
        ("mailto:jo@walsall.example.org", "mailto:"),
        ("zoë@walsall.example.org", "before the @"),
        ("a@b.example.org\r\nBcc: x@y.org", "not a valid email address"),
    ],
)
def test_valid_address_refuses_anything_else_in_one_line(raw: str, words: str) -> None:
    from newsletter.errors import ListError
    from newsletter.recipients import valid_address

    with pytest.raises(ListError) as caught:
        valid_address(raw)
    message = str(caught.value)
    assert words in message and "\n" not in message and "\r" not in message


# --- authorities.yaml ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words", "line"),
    [
        (None, "no such file", None),
        ("", "empty", None),
        (b"- {slug: alpha, name: Caf\xe9, kind: council}\n", "UTF-8", None),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply", None),
        (
            "- {slug: alpha, name: Alpha Council, kind: council}\n- {slug: beta, name: Beta, kind: council\n",
            "not valid YAML",
            2,
        ),
        (
            "- {slug: alpha, name: Alpha Council, kind: council}\n- {slug: Beta Council, name: Beta, kind: council}\n",
            "`Beta Council` is not an authority slug",
            2,
        ),
        (
            "- slug: alpha\n  name: Alpha Council\n  kind: council\n- slug: beta\n  name: Beta\n  kind: county\n",
            "kind",
            6,
        ),
        ("- slug: alpha\n  name: Alpha Council\n  kind: council\n  colour: red\n", "colour", 4),
        ("- {slug: alpha, kind: council}\n", "name", 1),
        ("slug: alpha\nname: Alpha\n", "a list", 1),
        (
            "- {slug: alpha, name: Alpha Council, kind: council}\n- {slug: alpha, name: Alpha Again, kind: trust}\n",
            "twice",
            2,
        ),
        ("- {slug: alpha, name: Alpha Council, kind: council}\n- just text\n", "slug", 2),
    ],
)
def test_authorities_file_problems_are_one_clear_line(
    tmp_path: Path, text: str | bytes | None, words: str, line: int | None
) -> None:
    from newsletter.errors import ListError

    path = tmp_path / "authorities.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ListError) as caught:
        load_authorities(path)
    message = str(caught.value)
    assert "\n" not in message, message
    assert words in message, message
    assert message.startswith(f"{path}:{line}:" if line else f"{path}:"), message


def test_authorities_file_that_is_a_folder(tmp_path: Path) -> None:
    from newsletter.errors import ListError

    with pytest.raises(ListError, match="cannot be read"):
        load_authorities(tmp_path)


def test_a_long_name_is_a_warning_and_an_encoded_word_name_is_kept_as_written(tmp_path: Path) -> None:
    path = tmp_path / "alpha.csv"
    path.write_text(
        "email,name\r\namy@alpha.example.org," + "A" * 250 + "\r\n"
        "ben@alpha.example.org,=?utf-8?q?Ben=0D=0AX-Injected=3A_yes?=\r\n",
        encoding="utf-8",
    )
    items = list(read_list(path, "alpha"))
    recipients = [i for i in items if isinstance(i, Recipient)]
    problems = [i for i in items if isinstance(i, RowProblem)]
    assert [r.email for r in recipients] == ["amy@alpha.example.org", "ben@alpha.example.org"]
    assert len(recipients[0].name) <= 200 and recipients[0].name.startswith("A" * 150)
    assert recipients[1].name == "=?utf-8?q?Ben=0D=0AX-Injected=3A_yes?="
    assert where(problems) == [(2, "warning"), (3, "warning")]
    assert "250 characters" in problems[0].message and "200" in problems[0].message
    assert "=?" in problems[1].message and "as written" in problems[1].message
