"""Real-world-shaped files, generated here: the engine's result must equal the `mariadb`
client's on the same file (tables, columns, indexes, routines, triggers, views, row counts,
CHECKSUM TABLE), and a second run must be a no-op.

The corpus: `mariadb-dump` of a database this module creates (default options, --hex-blob,
--skip-add-locks, --no-autocommit, --routines, one-row INSERTs, --compact, schema and data as
two migrations), phpMyAdmin-, Navicat- and sakila-style exports, and a multi-file set that
uses the client's `source`. The client applies every file in a session of its own, from the
migration folder, with --default-character-set=utf8mb4 (the engine's default).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from migrator_support import (
    apply_with_client,
    dump,
    history,
    migrator_for,
    query,
    schema_snapshot,
)

from standins.mariadb import MariaDBServer

# A database with what dumps have to carry: raw bytes in BLOB/BINARY columns, multibyte text,
# quotes, backslashes, delimiters and comment markers inside strings, JSON, generated columns,
# foreign keys, a trigger, a procedure, a function and a view.
SOURCE_STATEMENTS = [
    "CREATE TABLE author (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL, "
    "bio TEXT, UNIQUE KEY uk_name (name)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE book (id INT AUTO_INCREMENT PRIMARY KEY, author_id INT NOT NULL, "
    "title VARCHAR(200), cover BLOB, hash BINARY(16), price DECIMAL(8,2), "
    "published DATETIME(6), flags SET('a','b','c'), kind ENUM('paper','ebook'), "
    "meta JSON, title_len INT AS (CHAR_LENGTH(title)) STORED, KEY idx_author (author_id), "
    "KEY idx_title_price (title, price), "
    "CONSTRAINT fk_author FOREIGN KEY (author_id) REFERENCES author(id) ON DELETE CASCADE)",
    "CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(200), "
    "at TIMESTAMP NULL DEFAULT NULL)",
    "CREATE TABLE legacy (id INT PRIMARY KEY, label VARCHAR(50)) DEFAULT CHARSET=latin1",
    "CREATE TABLE bytes (id INT PRIMARY KEY, b VARBINARY(300), t TINYBLOB)",
    "INSERT INTO author (name, bio) VALUES ('Zoë', 'né à Paris; \"quoted\" \\\\ back'), "
    "('李', 'line1\\nline2\\r\\n\\ttab -- not a comment /* nor this */ # nor this'), "
    "('O''Brien', NULL), ('emoji 😀', 'DELIMITER ;; inside a string')",
    "INSERT INTO book (author_id, title, cover, hash, price, published, flags, kind, meta) "
    "VALUES (1, 'A', UNHEX('00FF0A0D5C27221A80C3'), UNHEX(MD5('a')), 9.99, "
    "'2020-01-01 10:00:00.123456', 'a,c', 'paper', '{\"k\": [1, \"two\"]}'), "
    "(2, 'B; not end', UNHEX(REPEAT('DEADBEEF00', 100)), UNHEX(MD5('b')), -1.50, NULL, '', "
    "'ebook', NULL)",
    "INSERT INTO legacy VALUES (1, 'café'), (2, 'plain')",
    "INSERT INTO bytes (id, b, t) SELECT seq, UNHEX(REPEAT(LPAD(HEX(seq MOD 256), 2, '0'), "
    "seq MOD 7 + 1)), UNHEX(LPAD(HEX(255 - seq MOD 256), 2, '0')) FROM seq_0_to_299",
    "CREATE VIEW v_books AS SELECT b.title, a.name FROM book b JOIN author a ON a.id = b.author_id",
    "CREATE TRIGGER trg_book_ins AFTER INSERT ON book FOR EACH ROW "
    "BEGIN INSERT INTO audit (msg) VALUES (CONCAT('book ', NEW.id)); END",
    "CREATE PROCEDURE count_books(OUT n INT) BEGIN SELECT COUNT(*) INTO n FROM book; END",
    "CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
    "INSERT INTO book (author_id, title) VALUES (3, 'C')",
]


@pytest.fixture(scope="module")
def source_db(mariadb: MariaDBServer) -> str:
    database = mariadb.create_database("corpus_src")
    conn = mariadb.root_connection(database)
    try:
        with conn.cursor() as cur:
            cur.execute("SET NAMES utf8mb4")
            for sql in SOURCE_STATEMENTS:
                cur.execute(sql)
    finally:
        conn.close()
    return database


def _location(tmp_path: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return tmp_path


def assert_engine_matches_client(mariadb: MariaDBServer, location: Path) -> None:
    by_client = mariadb.create_database("by_client")
    apply_with_client(mariadb, by_client, location)
    by_engine = mariadb.create_database("by_engine")
    first = migrator_for(mariadb, by_engine, location).migrate()
    assert first.applied, "the engine applied nothing"
    expected = schema_snapshot(mariadb, by_client)
    assert expected["tables"], "the client created nothing: the corpus file is not exercised"
    assert schema_snapshot(mariadb, by_engine) == expected
    states = [row[1] for row in history(mariadb, by_engine)]
    assert states == ["success"] * len(first.applied)
    again = migrator_for(mariadb, by_engine, location).migrate()
    assert again.applied == []
    assert schema_snapshot(mariadb, by_engine) == expected
    assert len(history(mariadb, by_engine)) == len(first.applied)


DUMP_VARIANTS = {
    "default": (),
    "hex_blob": ("--hex-blob",),
    "skip_add_locks": ("--skip-add-locks",),
    "no_autocommit": ("--no-autocommit",),
    "routines_and_triggers": ("--routines", "--triggers"),
    "one_row_inserts": ("--skip-extended-insert", "--routines"),
    # --compact drops the sql_mode header, so the stored generated column's dumped value is
    # an error in strict mode for the client too: that table stays out of this variant.
    "compact": (
        "--compact",
        "--routines",
        "--ignore-table={db}.book",
        "--ignore-table={db}.v_books",
    ),
}


@pytest.mark.parametrize("variant", DUMP_VARIANTS)
def test_a_mariadb_dump_applies_as_the_client_applies_it(
    mariadb: MariaDBServer, source_db: str, tmp_path: Path, variant: str
) -> None:
    options = [option.format(db=source_db) for option in DUMP_VARIANTS[variant]]
    content = dump(mariadb, source_db, *options)
    location = _location(tmp_path, {"V1__dump.sql": content})
    assert_engine_matches_client(mariadb, location)


def test_schema_and_data_dumps_as_two_migrations(
    mariadb: MariaDBServer, source_db: str, tmp_path: Path
) -> None:
    schema = dump(mariadb, source_db, "--no-data", "--routines")
    data = dump(mariadb, source_db, "--no-create-info", "--skip-triggers")
    location = _location(tmp_path, {"V1__schema.sql": schema, "V2__data.sql": data})
    assert_engine_matches_client(mariadb, location)


PHPMYADMIN = """-- phpMyAdmin SQL Dump
-- version 5.2.1
-- https://www.phpmyadmin.net/
--
-- Host: 127.0.0.1
-- Generation Time: Jan 01, 2026 at 10:00 AM

SET SQL_MODE = "NO_AUTO_VALUE_ON_ZERO";
START TRANSACTION;
SET time_zone = "+00:00";


/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!40101 SET @OLD_CHARACTER_SET_RESULTS=@@CHARACTER_SET_RESULTS */;
/*!40101 SET @OLD_COLLATION_CONNECTION=@@COLLATION_CONNECTION */;
/*!40101 SET NAMES utf8mb4 */;

--
-- Database: `shop`
--

-- --------------------------------------------------------

--
-- Table structure for table `customers`
--

CREATE TABLE `customers` (
  `id` int(11) NOT NULL,
  `email` varchar(190) NOT NULL,
  `name` varchar(100) DEFAULT NULL,
  `created` timestamp NOT NULL DEFAULT current_timestamp()
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

--
-- Dumping data for table `customers`
--

INSERT INTO `customers` (`id`, `email`, `name`, `created`) VALUES
(0, 'zero@example.com', 'Zero (NO_AUTO_VALUE_ON_ZERO keeps me)', '2026-01-01 09:00:00'),
(1, 'ann@example.com', 'Ann Ö\\'Neil', '2026-01-01 09:00:00'),
(2, 'bo@example.com', 'Bo; \\"semi\\"', '2026-01-02 09:00:00');

-- --------------------------------------------------------

CREATE TABLE `orders` (
  `id` int(11) NOT NULL,
  `customer_id` int(11) NOT NULL,
  `total` decimal(10,2) NOT NULL DEFAULT 0.00
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

INSERT INTO `orders` (`id`, `customer_id`, `total`) VALUES
(1, 1, '10.50'),
(2, 2, '3.00');

--
-- Indexes for dumped tables
--

ALTER TABLE `customers`
  ADD PRIMARY KEY (`id`),
  ADD UNIQUE KEY `email` (`email`);

ALTER TABLE `orders`
  ADD PRIMARY KEY (`id`),
  ADD KEY `customer_id` (`customer_id`);

--
-- AUTO_INCREMENT for dumped tables
--

ALTER TABLE `customers`
  MODIFY `id` int(11) NOT NULL AUTO_INCREMENT, AUTO_INCREMENT=3;

ALTER TABLE `orders`
  MODIFY `id` int(11) NOT NULL AUTO_INCREMENT, AUTO_INCREMENT=3;

--
-- Constraints for dumped tables
--

ALTER TABLE `orders`
  ADD CONSTRAINT `orders_ibfk_1` FOREIGN KEY (`customer_id`) REFERENCES `customers` (`id`);
COMMIT;

/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;
/*!40101 SET CHARACTER_SET_RESULTS=@OLD_CHARACTER_SET_RESULTS */;
/*!40101 SET COLLATION_CONNECTION=@OLD_COLLATION_CONNECTION */;
"""

NAVICAT = """/*
 Navicat Premium Data Transfer

 Source Server Type    : MySQL
 Target Server Version : 80036
 File Encoding         : 65001
*/

SET NAMES utf8mb4;
SET FOREIGN_KEY_CHECKS = 0;

-- ----------------------------
-- Table structure for city
-- ----------------------------
DROP TABLE IF EXISTS `city`;
CREATE TABLE `city`  (
  `id` int NOT NULL AUTO_INCREMENT,
  `country_id` int NOT NULL,
  `name` varchar(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL,
  PRIMARY KEY (`id`) USING BTREE,
  INDEX `fk_country`(`country_id` ASC) USING BTREE,
  CONSTRAINT `fk_country` FOREIGN KEY (`country_id`) REFERENCES `country` (`id`)
) ENGINE = InnoDB AUTO_INCREMENT = 3 CHARACTER SET = utf8mb4 ROW_FORMAT = Dynamic;

-- ----------------------------
-- Records of city
-- ----------------------------
BEGIN;
INSERT INTO `city` (`id`, `country_id`, `name`) VALUES (1, 1, 'Zürich');
INSERT INTO `city` (`id`, `country_id`, `name`) VALUES (2, 2, 'Kraków');
COMMIT;

DROP TABLE IF EXISTS `country`;
CREATE TABLE `country`  (
  `id` int NOT NULL,
  `name` varchar(64) NOT NULL,
  PRIMARY KEY (`id`) USING BTREE
) ENGINE = InnoDB CHARACTER SET = utf8mb4 ROW_FORMAT = Dynamic;

BEGIN;
INSERT INTO `country` VALUES (1, 'Switzerland'), (2, 'Poland');
COMMIT;

SET FOREIGN_KEY_CHECKS = 1;
"""

# sakila-data.sql's shape: autocommit off for the whole file, one COMMIT, and the file ends
# with the session still in autocommit=0 (so must every history write after it be durable).
SAKILA_STYLE = """SET NAMES utf8mb4;
SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0;
SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0;
SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='TRADITIONAL';
SET AUTOCOMMIT=0;

CREATE TABLE actor (
  actor_id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT,
  first_name VARCHAR(45) NOT NULL,
  last_update TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (actor_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT INTO actor VALUES (1,'PENELOPE','2006-02-15 04:34:33'),
(2,'NICK','2006-02-15 04:34:33'),
(3,'ED','2006-02-15 04:34:33');
INSERT INTO actor VALUES (4,'JENNIFER','2006-02-15 04:34:33');

COMMIT;

SET SQL_MODE=@OLD_SQL_MODE;
SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS;
SET UNIQUE_CHECKS=@OLD_UNIQUE_CHECKS;
"""


@pytest.mark.parametrize(
    "files",
    [
        pytest.param({"V1__phpmyadmin_export.sql": PHPMYADMIN}, id="phpmyadmin"),
        pytest.param({"V1__navicat_export.sql": NAVICAT}, id="navicat"),
        pytest.param(
            {
                "V1__sakila_style_data.sql": SAKILA_STYLE,
                # The next migration runs after a file that left autocommit off (its
                # last_update is given: a DEFAULT CURRENT_TIMESTAMP would differ between the
                # client's and the engine's runs whenever they fall in different seconds).
                "V2__after.sql": (
                    "INSERT INTO actor (actor_id, first_name, last_update)"
                    " VALUES (5, 'LAST', '2006-02-15 04:34:33');"
                ),
            },
            id="sakila_style",
        ),
    ],
)
def test_an_exported_file_applies_as_the_client_applies_it(
    mariadb: MariaDBServer, tmp_path: Path, files: dict[str, str]
) -> None:
    location = _location(tmp_path, {name: text.encode() for name, text in files.items()})
    assert_engine_matches_client(mariadb, location)


def test_a_multi_file_set_using_source_applies_as_the_client_applies_it(
    mariadb: MariaDBServer, source_db: str, tmp_path: Path
) -> None:
    # Paths are resolved as the client resolves them: against its working directory, the
    # migration folder (also inside a sourced file).
    files = {
        "V1__main.sql": (
            b"-- the schema, then the data, from files kept next to the migrations\n"
            b"source parts/schema.sql\n"
            b"\\. parts/data.sql\n"
            b"SELECT COUNT(*) FROM author\\G\n"
        ),
        "parts/schema.sql": dump(mariadb, source_db, "--no-data", "--routines"),
        "parts/data.sql": (
            b"SET NAMES utf8mb4;\nsource parts/data_rows.sql;\nINSERT INTO audit (msg) "
            b"VALUES ('loaded');\n"
        ),
        "parts/data_rows.sql": dump(mariadb, source_db, "--no-create-info", "--skip-triggers"),
    }
    location = _location(tmp_path, files)
    assert_engine_matches_client(mariadb, location)


@pytest.fixture
def other_db(mariadb: MariaDBServer) -> Iterator[str]:
    yield mariadb.create_database("other")


def test_a_dump_with_its_own_use_writes_where_the_client_writes(
    mariadb: MariaDBServer, tmp_path: Path, other_db: str
) -> None:
    # `/*!40000 USE x */`-style executable comments and a plain `use x` line: the data goes to
    # `x` with both tools, the engine's history stays in the target database, and the next
    # migration runs in the target database again.
    files = {
        "V1__elsewhere.sql": (
            f"/*!40000 USE `{other_db}` */;\nCREATE TABLE IF NOT EXISTS moved (x INT);\n"
            "INSERT INTO moved VALUES (1);\n"
        ).encode(),
        "V2__here.sql": b"CREATE TABLE here (x INT);\n",
    }
    location = _location(tmp_path, files)
    target = mariadb.create_database("target")
    migrator_for(mariadb, target, location).migrate()
    assert query(mariadb, other_db, "SELECT x FROM moved") == [(1,)]
    assert {t[0] for t in query(mariadb, target, "SHOW TABLES")} == {"here", "schema_history"}
