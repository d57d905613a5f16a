// Passwords refused at registration and change because they are among the most used (and so the
// first guessed). A short list on purpose: length rules do the rest. Sources: public breach top lists.
const commonPasswords = new Set(
  `123456 123456789 12345678 password qwerty123 qwerty 1q2w3e4r 111111 12345 1234567890 123123 000000
  abc123 password1 password123 iloveyou 1234567 123321 654321 qwertyuiop 123456a a123456 666666 asdfghjk
  987654321 zxcvbnm 112233 121212 11111111 00000000 88888888 12341234 1qaz2wsx qwer1234 passw0rd p@ssw0rd
  p@ssword welcome1 welcome123 admin123 administrator letmein1 letmein123 monkey123 dragon123 football1
  baseball1 sunshine1 princess1 trustno1 superman1 iloveyou1 starwars1 whatever1 changeme changeme123
  default1 secret123 master123 computer1 internet1 michael1 jennifer1 jordan23 hello123 freedom1 shadow123
  qazwsxedc 1q2w3e4r5t 1qazxsw2 zaq12wsx asdf1234 asdfasdf aa123456 abcd1234 abcdefgh 12qwaszx q1w2e3r4
  q1w2e3r4t5 password12 password1234 passwort 123qweasd 1234qwer qwertyui azertyuiop 987654321a 11223344
  55555555 77777777 99999999 12121212 123654789 147258369 159753456 741852963 qwerty12 qwerty1234 test1234
  testtest guest123 login123 summer2024 winter2024 spring2024 autumn2024 summer2025 winter2025 letmein!
  `
    .split(/\s+/)
    .filter((password) => password !== ''),
);

export function isCommonPassword(password: string): boolean {
  return commonPasswords.has(password.toLowerCase());
}
