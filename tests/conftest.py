"""Options shared by the whole suite (registered here so they work from any directory)."""


def pytest_addoption(parser):
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite the golden outputs (popef_dump and example transcripts)",
    )
