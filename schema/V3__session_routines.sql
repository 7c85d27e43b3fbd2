-- Session routines used by the application (from the seed's unit tests):
--   CALL create_user_session(user_id, @token)  -> inserts a 24-hour session, returns its token
--   SELECT validate_user_session(token)        -> 1 if the token exists and has not expired
--
-- With binary logging on (RDS with backups), MySQL only accepts a stored function declared
-- DETERMINISTIC, NO SQL or READS SQL DATA; validate_user_session only reads, so it says so.
-- (RDS's master user has no SUPER, so the stack's parameter group also sets
-- log_bin_trust_function_creators=1; see infra/settings.py.)

DELIMITER //

CREATE PROCEDURE create_user_session(IN p_user_id BIGINT, OUT p_session_token VARCHAR(255))
    MODIFIES SQL DATA
    COMMENT 'Creates a session valid for 24 hours; returns its token'
BEGIN
    -- 64 hex characters from a random UUID: unguessable and fits VARCHAR(255).
    SET p_session_token = SHA2(CONCAT(UUID(), '-', p_user_id, '-', RAND()), 256);
    INSERT INTO user_sessions (user_id, session_token, expires_at)
    VALUES (p_user_id, p_session_token, CURRENT_TIMESTAMP + INTERVAL 24 HOUR);
END//

CREATE FUNCTION validate_user_session(p_token VARCHAR(255))
    RETURNS BOOLEAN
    NOT DETERMINISTIC
    READS SQL DATA
    COMMENT 'TRUE when the session token exists and has not expired'
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM user_sessions
        WHERE session_token = p_token AND expires_at > CURRENT_TIMESTAMP
    );
END//

DELIMITER ;
