-- User preferences (JSON) and sessions (from the seed's Flyway V2).
-- JSON is a native type on MySQL 8 and an alias of LONGTEXT with a JSON_VALID check on
-- MariaDB; both accept and return the same documents.
ALTER TABLE users ADD COLUMN preferences JSON;

-- Relies on explicit_defaults_for_timestamp=ON (the default on MySQL 8 and MariaDB >= 10.10)
-- so that expires_at gets no implicit ON UPDATE CURRENT_TIMESTAMP.
CREATE TABLE user_sessions (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    session_token VARCHAR(255) UNIQUE NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE INDEX idx_user_sessions_token ON user_sessions(session_token);
CREATE INDEX idx_user_sessions_user_id ON user_sessions(user_id);
