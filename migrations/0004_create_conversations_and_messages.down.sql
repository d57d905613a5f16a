DROP TABLE chat_turn_keys;
DROP TABLE messages;
DROP TABLE conversations;
