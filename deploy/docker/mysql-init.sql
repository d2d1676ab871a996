-- Runs once, when the mysql service initialises its volume (after MYSQL_USER is created).
-- The capture user's privileges: snapshot (SELECT, RELOAD for FLUSH TABLES WITH READ LOCK) and
-- binlog streaming (REPLICATION SLAVE, REPLICATION CLIENT).
GRANT SELECT, RELOAD, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'tributary'@'%';

-- The seed's table and rows (as `tributary demo` creates them).
CREATE TABLE IF NOT EXISTS bankdb.bank_accounts (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id INT NOT NULL,
  account VARCHAR(100) NOT NULL,
  registered_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO bankdb.bank_accounts (user_id, account, registered_at) VALUES
  (1001, 'KB Bank 123-456-789012', '2025-09-18 01:52:22'),
  (1002, 'Shinhan Bank 987-654-321098', '2025-09-18 03:43:29'),
  (1003, 'Woori Bank 555-666-777888', '2025-09-18 04:10:00');
