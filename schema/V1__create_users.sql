-- The users table (from the seed's Flyway V1).
-- Portable between MySQL 8 and MariaDB 10.11: utf8mb4 without naming a collation
-- (MariaDB has no utf8mb4_0900_ai_ci), so each server uses its own utf8mb4 default.
CREATE TABLE users (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    email VARCHAR(255) UNIQUE NOT NULL,
    name VARCHAR(100) NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Kept as in the seed (the UNIQUE constraint already indexes email; queries may use either).
CREATE INDEX idx_users_email ON users(email);
