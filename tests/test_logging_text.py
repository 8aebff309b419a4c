"""django_observability.logging.text: TextFormatter."""

import io
import logging
import logging.config
import re

from django_observability.logging import (
    TextFormatter,
    logging_config,
)
from tests.logging_support import (
    ALL_LOGGERS,
    LOGGER,
    applied,
    in_request,
)


def test_text_lines_carry_the_request_id():
    stream = io.StringIO()
    with applied(logging_config(json=False, stream=stream), ALL_LOGGERS):
        with in_request("text-rid"):
            logging.getLogger("django_observability.access").info("GET /x 200")
        logging.getLogger("django").warning("outside")
    first, second = stream.getvalue().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO django_observability.access "
        r"\[text-rid\] GET /x 200",
        first,
    )
    assert second.endswith("WARNING django [-] outside")


def test_text_formatter_does_not_change_the_record():
    record = logging.LogRecord(LOGGER, logging.INFO, __file__, 1, "m", (), None)
    record.request_id = None
    line = TextFormatter("%(request_id)s %(trace_id)s %(message)s").format(record)
    assert line == "- - m"
    assert record.request_id is None
    assert "trace_id" not in record.__dict__
