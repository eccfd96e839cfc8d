-- phpBB 3.3 tables that xmppd's phpbb auth backend reads, for PostgreSQL.
--
-- Written for xmppd's tests from phpBB 3.3's schema definition (install/schemas/schema.json
-- plus the 3.3.x migrations touching these tables), rendered with phpBB's PostgreSQL type
-- map: UINT/TIMESTAMP = INT4 and BOOL/USINT = INT2 with a ">= 0" CHECK, TINT:n = INT2,
-- BINT = INT8, MTEXT = TEXT, auto_increment = a "<table>_seq" sequence, index names
-- "<table>_<key>". VCHAR_CI columns (username, username_clean) use phpBB's varchar_ci
-- domain, whose "=" compares LOWER() of both sides - declared here the way phpBB's
-- installer does, so queries are tested against the same operator resolution.
-- The fixture replaces the "phpbb_" prefix when a test asks for another one.
-- Statements are separated by a line ending in ";".

CREATE DOMAIN varchar_ci AS varchar(255) NOT NULL DEFAULT ''::character varying;

CREATE FUNCTION _varchar_ci_equal(varchar_ci, varchar_ci) RETURNS boolean AS 'SELECT LOWER($1) = LOWER($2)' LANGUAGE SQL STRICT;

CREATE FUNCTION _varchar_ci_not_equal(varchar_ci, varchar_ci) RETURNS boolean AS 'SELECT LOWER($1) != LOWER($2)' LANGUAGE SQL STRICT;

CREATE OPERATOR = (PROCEDURE = _varchar_ci_equal, LEFTARG = varchar_ci, RIGHTARG = varchar_ci, COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel);

CREATE OPERATOR <> (PROCEDURE = _varchar_ci_not_equal, LEFTARG = varchar_ci, RIGHTARG = varchar_ci, COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel);

CREATE SEQUENCE phpbb_users_seq;

CREATE TABLE phpbb_users (
	user_id INT4 DEFAULT nextval('phpbb_users_seq') CHECK (user_id >= 0),
	user_type INT2 NOT NULL DEFAULT '0',
	group_id INT4 NOT NULL DEFAULT '3' CHECK (group_id >= 0),
	user_permissions TEXT NOT NULL DEFAULT '',
	user_perm_from INT4 NOT NULL DEFAULT '0' CHECK (user_perm_from >= 0),
	user_ip varchar(40) NOT NULL DEFAULT '',
	user_regdate INT4 NOT NULL DEFAULT '0' CHECK (user_regdate >= 0),
	username varchar_ci NOT NULL DEFAULT '',
	username_clean varchar_ci NOT NULL DEFAULT '',
	user_password varchar(255) NOT NULL DEFAULT '',
	user_passchg INT4 NOT NULL DEFAULT '0' CHECK (user_passchg >= 0),
	user_email varchar(100) NOT NULL DEFAULT '',
	user_email_hash INT8 NOT NULL DEFAULT '0',
	user_birthday varchar(10) NOT NULL DEFAULT '',
	user_lastvisit INT4 NOT NULL DEFAULT '0' CHECK (user_lastvisit >= 0),
	user_last_active INT4 NOT NULL DEFAULT '0' CHECK (user_last_active >= 0),
	user_lastmark INT4 NOT NULL DEFAULT '0' CHECK (user_lastmark >= 0),
	user_lastpost_time INT4 NOT NULL DEFAULT '0' CHECK (user_lastpost_time >= 0),
	user_lastpage varchar(200) NOT NULL DEFAULT '',
	user_last_confirm_key varchar(10) NOT NULL DEFAULT '',
	user_last_search INT4 NOT NULL DEFAULT '0' CHECK (user_last_search >= 0),
	user_warnings INT2 NOT NULL DEFAULT '0',
	user_last_warning INT4 NOT NULL DEFAULT '0' CHECK (user_last_warning >= 0),
	user_login_attempts INT2 NOT NULL DEFAULT '0',
	user_inactive_reason INT2 NOT NULL DEFAULT '0',
	user_inactive_time INT4 NOT NULL DEFAULT '0' CHECK (user_inactive_time >= 0),
	user_posts INT4 NOT NULL DEFAULT '0' CHECK (user_posts >= 0),
	user_lang varchar(30) NOT NULL DEFAULT '',
	user_timezone varchar(100) NOT NULL DEFAULT '',
	user_dateformat varchar(30) NOT NULL DEFAULT 'd M Y H:i',
	user_style INT4 NOT NULL DEFAULT '0' CHECK (user_style >= 0),
	user_rank INT4 NOT NULL DEFAULT '0' CHECK (user_rank >= 0),
	user_colour varchar(6) NOT NULL DEFAULT '',
	user_new_privmsg INT4 NOT NULL DEFAULT '0',
	user_unread_privmsg INT4 NOT NULL DEFAULT '0',
	user_last_privmsg INT4 NOT NULL DEFAULT '0' CHECK (user_last_privmsg >= 0),
	user_message_rules INT2 NOT NULL DEFAULT '0' CHECK (user_message_rules >= 0),
	user_full_folder INT4 NOT NULL DEFAULT '-3',
	user_emailtime INT4 NOT NULL DEFAULT '0' CHECK (user_emailtime >= 0),
	user_topic_show_days INT2 NOT NULL DEFAULT '0' CHECK (user_topic_show_days >= 0),
	user_topic_sortby_type varchar(1) NOT NULL DEFAULT 't',
	user_topic_sortby_dir varchar(1) NOT NULL DEFAULT 'd',
	user_post_show_days INT2 NOT NULL DEFAULT '0' CHECK (user_post_show_days >= 0),
	user_post_sortby_type varchar(1) NOT NULL DEFAULT 't',
	user_post_sortby_dir varchar(1) NOT NULL DEFAULT 'a',
	user_notify INT2 NOT NULL DEFAULT '0' CHECK (user_notify >= 0),
	user_notify_pm INT2 NOT NULL DEFAULT '1' CHECK (user_notify_pm >= 0),
	user_notify_type INT2 NOT NULL DEFAULT '0',
	user_allow_pm INT2 NOT NULL DEFAULT '1' CHECK (user_allow_pm >= 0),
	user_allow_viewonline INT2 NOT NULL DEFAULT '1' CHECK (user_allow_viewonline >= 0),
	user_allow_viewemail INT2 NOT NULL DEFAULT '1' CHECK (user_allow_viewemail >= 0),
	user_allow_massemail INT2 NOT NULL DEFAULT '1' CHECK (user_allow_massemail >= 0),
	user_options INT4 NOT NULL DEFAULT '230271' CHECK (user_options >= 0),
	user_avatar varchar(255) NOT NULL DEFAULT '',
	user_avatar_type varchar(255) NOT NULL DEFAULT '',
	user_avatar_width INT2 NOT NULL DEFAULT '0' CHECK (user_avatar_width >= 0),
	user_avatar_height INT2 NOT NULL DEFAULT '0' CHECK (user_avatar_height >= 0),
	user_sig TEXT NOT NULL DEFAULT '',
	user_sig_bbcode_uid varchar(8) NOT NULL DEFAULT '',
	user_sig_bbcode_bitfield varchar(255) NOT NULL DEFAULT '',
	user_jabber varchar(255) NOT NULL DEFAULT '',
	user_actkey varchar(32) NOT NULL DEFAULT '',
	reset_token varchar(64) NOT NULL DEFAULT '',
	reset_token_expiration INT4 NOT NULL DEFAULT '0' CHECK (reset_token_expiration >= 0),
	user_newpasswd varchar(255) NOT NULL DEFAULT '',
	user_form_salt varchar(32) NOT NULL DEFAULT '',
	user_new INT2 NOT NULL DEFAULT '1' CHECK (user_new >= 0),
	user_reminded INT2 NOT NULL DEFAULT '0',
	user_reminded_time INT4 NOT NULL DEFAULT '0' CHECK (user_reminded_time >= 0),
	PRIMARY KEY (user_id)
);

CREATE INDEX phpbb_users_user_birthday ON phpbb_users (user_birthday);

CREATE INDEX phpbb_users_user_email_hash ON phpbb_users (user_email_hash);

CREATE INDEX phpbb_users_user_type ON phpbb_users (user_type);

CREATE UNIQUE INDEX phpbb_users_username_clean ON phpbb_users (username_clean);

CREATE TABLE phpbb_sessions (
	session_id char(32) NOT NULL DEFAULT '',
	session_user_id INT4 NOT NULL DEFAULT '0' CHECK (session_user_id >= 0),
	session_last_visit INT4 NOT NULL DEFAULT '0' CHECK (session_last_visit >= 0),
	session_start INT4 NOT NULL DEFAULT '0' CHECK (session_start >= 0),
	session_time INT4 NOT NULL DEFAULT '0' CHECK (session_time >= 0),
	session_ip varchar(40) NOT NULL DEFAULT '',
	session_browser varchar(150) NOT NULL DEFAULT '',
	session_forwarded_for varchar(255) NOT NULL DEFAULT '',
	session_page varchar(255) NOT NULL DEFAULT '',
	session_viewonline INT2 NOT NULL DEFAULT '1' CHECK (session_viewonline >= 0),
	session_autologin INT2 NOT NULL DEFAULT '0' CHECK (session_autologin >= 0),
	session_admin INT2 NOT NULL DEFAULT '0' CHECK (session_admin >= 0),
	session_forum_id INT4 NOT NULL DEFAULT '0' CHECK (session_forum_id >= 0),
	PRIMARY KEY (session_id)
);

CREATE INDEX phpbb_sessions_session_time ON phpbb_sessions (session_time);

CREATE INDEX phpbb_sessions_session_user_id ON phpbb_sessions (session_user_id);

CREATE INDEX phpbb_sessions_session_fid ON phpbb_sessions (session_forum_id);

CREATE TABLE phpbb_sessions_keys (
	key_id char(32) NOT NULL DEFAULT '',
	user_id INT4 NOT NULL DEFAULT '0' CHECK (user_id >= 0),
	last_ip varchar(40) NOT NULL DEFAULT '',
	last_login INT4 NOT NULL DEFAULT '0' CHECK (last_login >= 0),
	PRIMARY KEY (key_id, user_id)
);

CREATE INDEX phpbb_sessions_keys_last_login ON phpbb_sessions_keys (last_login);

CREATE SEQUENCE phpbb_banlist_seq;

CREATE TABLE phpbb_banlist (
	ban_id INT4 DEFAULT nextval('phpbb_banlist_seq') CHECK (ban_id >= 0),
	ban_userid INT4 NOT NULL DEFAULT '0' CHECK (ban_userid >= 0),
	ban_ip varchar(40) NOT NULL DEFAULT '',
	ban_email varchar(100) NOT NULL DEFAULT '',
	ban_start INT4 NOT NULL DEFAULT '0' CHECK (ban_start >= 0),
	ban_end INT4 NOT NULL DEFAULT '0' CHECK (ban_end >= 0),
	ban_exclude INT2 NOT NULL DEFAULT '0' CHECK (ban_exclude >= 0),
	ban_reason varchar(255) NOT NULL DEFAULT '',
	ban_give_reason varchar(255) NOT NULL DEFAULT '',
	PRIMARY KEY (ban_id)
);

CREATE INDEX phpbb_banlist_ban_end ON phpbb_banlist (ban_end);

CREATE INDEX phpbb_banlist_ban_user ON phpbb_banlist (ban_userid, ban_exclude);

CREATE INDEX phpbb_banlist_ban_email ON phpbb_banlist (ban_email, ban_exclude);

CREATE INDEX phpbb_banlist_ban_ip ON phpbb_banlist (ban_ip, ban_exclude);

CREATE TABLE phpbb_config (
	config_name varchar(255) NOT NULL DEFAULT '',
	config_value varchar(255) NOT NULL DEFAULT '',
	is_dynamic INT2 NOT NULL DEFAULT '0' CHECK (is_dynamic >= 0),
	PRIMARY KEY (config_name)
);

CREATE INDEX phpbb_config_is_dynamic ON phpbb_config (is_dynamic);
